"""`paretune export-study`: a job's trials written as an Optuna study, so optuna-dashboard and
Optuna's own analysis tools (plots, importances, best_trials) can open them."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution

from results.records import JobRecord
from results.records import TrialRecord
from search_spaces.job_spec import parse_job_spec
from tuner.driver import build_space


def _distributions(job: JobRecord, trials: list[TrialRecord]) -> dict[str, BaseDistribution]:
    """The job's search-space distributions, widened to every value its trials hold (fixed
    knobs become one-choice categoricals, so every trial has every parameter)."""
    spec = parse_job_spec(job.spec)
    dists: dict[str, BaseDistribution] = dict(build_space(spec).to_optuna())
    seen: dict[str, list[Any]] = {}
    for t in trials:
        for knob, value in t.config.items():
            if isinstance(value, dict | list) or value is None:
                continue  # nested pools (inference) stay in user_attrs
            seen.setdefault(knob, [])
            if value not in seen[knob]:
                seen[knob].append(value)
    for knob, values in seen.items():
        current = dists.get(knob)
        choices = list(getattr(current, "choices", ()))
        merged = choices + [v for v in values if v not in choices]
        dists[knob] = CategoricalDistribution(merged)
    return dists


def _frozen(t: TrialRecord, job: JobRecord, dists: dict[str, BaseDistribution]) -> Any:
    objectives = job.spec.get("objectives", [])
    params = {k: v for k, v in t.config.items() if k in dists}
    values = [t.metrics[o["metric"]] for o in objectives] if t.state == "complete" else None
    state = {
        "complete": optuna.trial.TrialState.COMPLETE,
        "failed": optuna.trial.TrialState.FAIL,
        "pruned": optuna.trial.TrialState.PRUNED,
    }[t.state]
    constraints = t.details.get("constraints") or None
    return optuna.trial.create_trial(
        state=state,
        params=params,
        distributions={k: dists[k] for k in params},
        values=values,
        constraints=constraints if state == optuna.trial.TrialState.COMPLETE else None,
        user_attrs={
            "paretune_trial_number": t.number,
            "feasible": t.feasible,
            "violations": t.violations,
            "metrics": t.metrics,
            "config": t.config,
        },
    )


def export_study(job: JobRecord, trials: list[TrialRecord], storage: str, name: str) -> int:
    """Create study ``name`` in ``storage`` holding the job's trials; returns how many."""
    objectives = job.spec.get("objectives", [])
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=["maximize" if o["direction"] == "max" else "minimize" for o in objectives],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o["metric"] for o in objectives])
    study.set_user_attr("paretune_job_id", job.id)
    study.set_user_attr("paretune_spec", job.spec)
    dists = _distributions(job, trials)
    study.add_trials([_frozen(t, job, dists) for t in trials])
    return len(trials)
