"""Optuna glue: samplers by name, an in-memory study per job, trial rehydration."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from search_spaces.job_spec import SamplerSpec
from search_spaces.objectives import Objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_sampler(spec: SamplerSpec) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler for a job, and a record of it (class, arguments, seed, Optuna version).

    ``auto`` is Optuna 5's own multi-objective default (multivariate TPE with constant liar),
    which copes with the categorical knobs and batched asks paretune uses.
    """
    name = spec.name
    args: dict[str, Any] = {"seed": spec.seed}
    sampler: optuna.samplers.BaseSampler
    if name in ("auto", "tpe"):
        args |= {"multivariate": True, "constant_liar": True}
        sampler = optuna.samplers.TPESampler(**args)
    elif name == "nsga2":
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


def rehydrate(
    study: optuna.Study,
    distributions: dict[str, BaseDistribution],
    params: dict[str, Any],
    values: list[float] | None,
    constraints: dict[str, float] | None,
) -> None:
    """Add a stored trial back to a fresh study, so a resumed job's sampler sees its history."""
    usable = {k: v for k, v in params.items() if k in distributions and _in(distributions[k], v)}
    if len(usable) != len(distributions):
        return  # a point outside this space (e.g. an edited copy): nothing to teach the sampler
    state = optuna.trial.TrialState.COMPLETE if values else optuna.trial.TrialState.FAIL
    trial = optuna.trial.create_trial(
        state=state,
        params=usable,
        distributions=distributions,
        values=values or None,
        constraints=constraints or None,
    )
    study.add_trial(trial)


def _in(dist: BaseDistribution, value: Any) -> bool:
    choices = getattr(dist, "choices", None)
    return choices is None or value in choices
