"""Optuna glue: samplers by name, an in-memory study per job, trial rehydration."""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from search_spaces.config import flatten_config
from search_spaces.job_spec import SamplerSpec
from search_spaces.objectives import Objective
from search_spaces.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


NSGA2_MIN_POPULATION = 8


def make_sampler(
    spec: SamplerSpec, batch: int | None = None, space: SearchSpace | None = None
) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler for a job, and a record of it (class, arguments, seed, Optuna version).

    ``auto`` (the default, also named ``bo``) is paretune's Bayesian optimisation over the
    enumerated valid points (``tuner/valid_set_sampler.py``), which needs the job's ``space``.
    On the benchmark's training spaces (benchmarks/search_efficiency.py) it reached
    0.955-0.995 of the exhaustive hypervolume within 50 trials where multivariate TPE with
    constant liar (``tpe``, Optuna 5's own multi-objective default and paretune's default
    before) reached 0.92-0.94, NSGA-II and random search less; Optuna's GP proposes in the
    box of all knob values, where most points are invalid, and costs seconds per ask.
    Projecting TPE's invalid proposals onto the nearest valid points was tried and scored
    lower than pruning them (with random valid points when the sampler stalls).

    NSGA-II's population is sized to the ``batch`` (at least 8): with the default 50 and
    batches of 8-32 asked before any is told, its first generation never completed and it
    kept drawing its random initial population.
    """
    name = spec.name
    args: dict[str, Any] = {"seed": spec.seed}
    sampler: optuna.samplers.BaseSampler
    if name in ("auto", "bo"):
        if space is None:
            raise ValueError(f"the {name} sampler needs the job's search space")
        from tuner.valid_set_sampler import ValidSetSampler

        sampler = ValidSetSampler(space, seed=spec.seed)
        args |= sampler.settings()  # recorded with the job, so a result can be reproduced
    elif name == "tpe":
        args |= {"multivariate": True, "constant_liar": True}
        sampler = optuna.samplers.TPESampler(**args)
    elif name == "nsga2":
        args["population_size"] = max(NSGA2_MIN_POPULATION, batch or NSGA2_MIN_POPULATION)
        sampler = optuna.samplers.NSGAIISampler(**args)
    elif name == "random":
        sampler = optuna.samplers.RandomSampler(**args)
    elif name == "gp":
        sampler = optuna.samplers.GPSampler(**args)
    else:  # pragma: no cover - SamplerSpec validates the name
        raise ValueError(f"unknown sampler {name}")
    info = {
        "name": name,
        "class": type(sampler).__name__,
        "args": args,
        "optuna_version": optuna.__version__,
    }
    return sampler, info


def make_study(objectives: list[Objective], sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """In-memory study: one writer (the driver) and bulk writes of results to our tables."""
    study = optuna.create_study(
        directions=["maximize" if o.direction == "max" else "minimize" for o in objectives],
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.metric for o in objectives])
    return study


def stored_params(
    distributions: dict[str, BaseDistribution],
    config: dict[str, Any],
    space: SearchSpace | None = None,
) -> dict[str, Any] | None:
    """Optuna params (one per distribution) that reproduce a stored configuration, or None
    when no point of this space does (e.g. a trial of an edited copy of the job).

    Stored configurations are nested (an inference job's disaggregated ``prefill`` and
    ``decode`` pools) while the space's knobs are flat (``prefill_tp``), and a point leaves the
    knobs of its other mode unused (an aggregated point has no pools, a disaggregated one keeps
    the top-level shape at its defaults). Live trials carry a value for every distribution, the
    unused ones arbitrary, so unused knobs get a fill value here; with ``space`` the result is
    checked by decoding it back to exactly the stored configuration.
    """
    flat = flatten_config(config)
    params: dict[str, Any] = {}
    unused: list[str] = []
    for name, dist in distributions.items():
        value = flat.get(name)
        if value is not None and _in(dist, value):
            params[name] = value
        elif value is None or space is not None:  # unused here, or the round trip decides
            unused.append(name)
        else:
            return None  # a value outside this space
    for name in unused:
        params[name] = _fill(distributions[name])
    if space is None:
        return params
    try:
        decoded = space.decode(params)
    except ValueError:
        return None
    same = decoded.model_dump(mode="json") == _json(config)
    return params if same else None


def rehydrate(
    study: optuna.Study,
    distributions: dict[str, BaseDistribution],
    params: dict[str, Any],
    values: list[float] | None,
    constraints: dict[str, float] | None,
    space: SearchSpace | None = None,
) -> bool:
    """Add a stored trial (its stored configuration ``params``) back to a fresh study, so a
    resumed job's sampler sees its history; False when the point is not in this space."""
    usable = stored_params(distributions, params, space)
    if usable is None:
        return False  # a point outside this space: nothing to teach the sampler
    state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
    trial = optuna.trial.create_trial(
        state=state,
        params=usable,
        distributions=distributions,
        values=values or None,
        constraints=constraints or None,
    )
    study.add_trial(trial)
    return True


def _json(config: dict[str, Any]) -> Any:
    """``config`` as it reads back from JSON (tuples become lists, enums their values)."""
    return json.loads(json.dumps(config, default=str))


def _fill(dist: BaseDistribution) -> Any:
    """A value for a knob the point does not use (the first choice: the decode drops it)."""
    choices = getattr(dist, "choices", None)
    if choices:
        return choices[0]
    low = getattr(dist, "low", None)
    if low is None:  # pragma: no cover - the spaces here are categorical
        raise ValueError(f"cannot fill a value for {dist!r}")
    return low


def _in(dist: BaseDistribution, value: Any) -> bool:
    choices = getattr(dist, "choices", None)
    return choices is None or value in choices
