"""The hybrid phase: profile the analytical front's best candidates, re-rank by measurement.

The analytical search is fast but drifts from reality; profiling every candidate is trusted
but costs a device run each. After the analytical search, the ``top_k`` best front points (by
the first objective, ties by the next; the front is topped up with the next best feasible
trials when it is short) run for real with the ``profile`` evaluator. Each profile becomes a
new trial of the job, evaluator ``profile@...``, whose details hold the prediction it was picked
on and the measurement side by side; the job's front and recommendation are then taken from the
measured trials, and the job reports how far the predictions were from them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from results.records import TrialRecord
from search_spaces.config import config_hash
from search_spaces.evaluators import HybridEvaluatorSpec
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.objectives import Objective
from tuner.evaluation import Outcome
from tuner.recommend import front_of

# reported for every job besides its objectives (those a kind does not produce are skipped)
ERROR_METRICS = ("step_time_s", "ttft_ms", "tpot_ms", "memory_per_gpu_gib")


def pick_candidates(
    trials: Sequence[TrialRecord], objectives: Sequence[Objective], k: int
) -> list[TrialRecord]:
    """The ``k`` best predicted trials: front points first, then other feasible ones, each
    group in recommendation order (first objective, ties by the next)."""

    def rank(t: TrialRecord) -> tuple[tuple[float, ...], int]:
        return tuple(o.loss(t.metrics[o.metric]) for o in objectives), t.number

    front = sorted(front_of(trials, objectives), key=rank)
    chosen = {t.number for t in front}
    rest = sorted(
        (t for t in trials if t.state == "complete" and t.feasible and t.number not in chosen),
        key=rank,
    )
    return (front + rest)[:k]


def profile_spec_of(spec: Any) -> Any:
    """The job's spec with the hybrid settings turned into a profile evaluator."""
    settings = spec.evaluator
    assert isinstance(settings, HybridEvaluatorSpec)
    profile = ProfileEvaluatorSpec(**settings.model_dump(exclude={"type", "top_k"}))
    return spec.model_copy(update={"evaluator": profile})


def _errors(predicted: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
    return {k: (predicted[k] - v) / v for k, v in measured.items() if k in predicted and v}


def _record(
    number: int, source: TrialRecord, outcome: Outcome, evaluator: str, eval_key: str
) -> TrialRecord:
    details = {
        **outcome.details,
        "constraints": outcome.constraints,
        "predicted": source.metrics,
        "measured": outcome.metrics,
        "prediction_error": _errors(source.metrics, outcome.metrics),
        "predicted_trial": source.number,
        "phase": "hybrid",
    }
    return TrialRecord(
        number=number,
        config=source.config,
        config_key=source.config_key,
        eval_key=eval_key,
        state="failed" if outcome.error else "complete",
        metrics=outcome.metrics,
        feasible=outcome.feasible and not outcome.error,
        violations=outcome.violations,
        details=details,
        duration_s=outcome.duration_s,
        evaluator=evaluator,
        error=outcome.error,
    )


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation of predicted and measured values (None below 2 points or ties only)."""
    if len(xs) < 2:
        return None

    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        for r, i in enumerate(order):
            out[i] = float(r)
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else None


def hybrid_summary(
    measured: Sequence[TrialRecord], objectives: Sequence[Objective], top_k: int
) -> dict[str, Any]:
    """Prediction error of the profiled trials: mean absolute and mean signed relative error
    per metric (signed > 0: the model over-predicts), and the rank agreement."""
    ok = [t for t in measured if t.state == "complete"]
    metrics = list(dict.fromkeys([o.metric for o in objectives] + list(ERROR_METRICS)))
    error: dict[str, dict[str, float]] = {}
    for metric in metrics:
        found = [t.details.get("prediction_error", {}).get(metric) for t in ok]
        errs = [float(e) for e in found if e is not None]
        if errs:
            error[metric] = {
                "mean_abs_pct": 100 * sum(abs(e) for e in errs) / len(errs),
                "mean_signed_pct": 100 * sum(errs) / len(errs),
                "n": len(errs),
            }
    first = objectives[0].metric
    pairs = [(t.details["predicted"][first], t.metrics[first]) for t in ok if first in t.metrics]
    rho = _spearman([p for p, _ in pairs], [m for _, m in pairs])
    return {
        "top_k": top_k,
        "profiled": len(ok),
        "failed": len(measured) - len(ok),
        "prediction_error": error,
        "rank_correlation": rho,
        "ranked_by": "measured",
        "profiled_trials": [t.number for t in measured],
    }


def run_hybrid_phase(
    spec: Any,
    executor: Any,
    sink: Any,
    trials: list[TrialRecord],
    existing: list[TrialRecord],
    state: Any,
) -> tuple[list[TrialRecord], list[TrialRecord], dict[str, Any]]:
    """Profile the top-k predicted trials (one task each), store them, and return all trials,
    the trials to rank the front by (the measured ones) and the job's summary."""
    from tuner.driver import evaluation_ground
    from tuner.kinds import dispatch_for
    from tuner.kinds import evaluator_version

    settings = spec.evaluator
    profile_spec = profile_spec_of(spec)
    picks = pick_candidates(trials, spec.objectives, settings.top_k)
    done = {t.config_key: t for t in existing if t.evaluator.startswith("profile@")}
    measured = [done[t.config_key] for t in picks if t.config_key in done]
    todo = [t for t in picks if t.config_key not in done]
    make_options = dispatch_for(profile_spec).task_options
    assert make_options is not None
    options = make_options(profile_spec, getattr(executor, "resources", {}))
    version, ground = evaluator_version(profile_spec), evaluation_ground(profile_spec)
    spec_json = json.dumps(profile_spec.model_dump(mode="json"))
    new = []
    for index, outcomes in executor.run(spec_json, [[t.config] for t in todo], options):
        source = todo[index]
        key = config_hash({"ground": ground, "config": source.config_key})
        record = _record(
            state.take_number(), source, Outcome.model_validate(outcomes[0]), version, key
        )
        sink.add([record])
        new.append(record)
    measured += new
    summary = hybrid_summary(measured, spec.objectives, settings.top_k)
    ranked = [t for t in measured if t.state == "complete"]
    if not any(t.feasible for t in ranked):
        ranked = trials
        summary["ranked_by"] = "prediction (no profiled trial succeeded and fits)"
    everything = sorted([*trials, *new], key=lambda t: t.number)
    return everything, ranked, {"hybrid": summary}


def describe(summary: dict[str, Any]) -> str:
    """One line for the CLI: what was profiled and how far the predictions were."""
    errors = ", ".join(
        f"{metric} {e['mean_abs_pct']:.0f}% (signed {e['mean_signed_pct']:+.0f}%)"
        for metric, e in summary["prediction_error"].items()
    )
    rho = summary.get("rank_correlation")
    rank = f"; rank correlation {rho:.2f}" if rho is not None else ""
    return (
        f"hybrid: profiled {summary['profiled']} of the top {summary['top_k']} predicted "
        f"configurations ({summary['failed']} failed), ranked by {summary['ranked_by']}; "
        f"prediction error {errors or 'n/a'}{rank}"
    )
