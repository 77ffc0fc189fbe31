"""The inference job kind: InferenceSpace, InferenceConfig, the analytical serving model, the
SLO-aware recommendation and the vLLM / SGLang / TensorRT-LLM launch files.

Feasibility of a serving configuration: it fits in memory (at least one request's KV cache
beside the weights), meets the workload's TTFT and TPOT SLOs, keeps up with an open-loop request
rate, and meets the job's limits. Each is also an Optuna constraint (``<= 0`` is feasible), so
samplers learn where the feasible region lies instead of only seeing pruned trials.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from cost_models.inference import InferenceEstimate
from cost_models.inference import estimate_inference
from cost_models.inference_params import DATA_FILE
from results.records import Recommendation
from results.records import TrialRecord
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_space import InferenceSpace
from search_spaces.job_spec import InferenceJobSpec
from search_spaces.objectives import Objective
from tuner.evaluation import Outcome
from tuner.evaluation import limit_constraints
from tuner.inference_exporters import INFERENCE_EXPORTERS
from tuner.kinds import JobKind
from tuner.kinds import register_kind

EVALUATOR_VERSION = "analytical-inference-0.1"


def analytical_version() -> str:
    """The serving model's version plus a hash of its data file (formats, backend constants,
    fitted factors): refitting changes every evaluation key, so no stale estimate is reused."""
    digest = hashlib.sha256(DATA_FILE.read_bytes()).hexdigest()[:8]
    return f"{EVALUATOR_VERSION}+{digest}"


def build_inference_space(spec: InferenceJobSpec) -> InferenceSpace:
    return InferenceSpace(spec.model, spec.cluster, spec.workload, spec.space)


def slo_constraints(spec: InferenceJobSpec, est: InferenceEstimate) -> dict[str, float]:
    """Optuna constraint values (<= 0 feasible): memory, SLOs, open-loop saturation."""
    out = {"memory_excess_gib": est.memory_per_gpu_gib - est.memory_capacity_gib}
    if not est.fits:
        out["memory_excess_gib"] = max(out["memory_excess_gib"], 1.0)
    w = spec.workload
    if w.ttft_ms is not None:
        out["ttft_slo_excess_ms"] = est.ttft_ms - w.ttft_ms
    if w.tpot_ms is not None:
        out["tpot_slo_excess_ms"] = est.tpot_ms - w.tpot_ms
    if w.request_rate is not None:
        out["request_rate_excess"] = 1.0 if est.saturated else -1.0
    return out


def slo_violations(
    spec: InferenceJobSpec,
    est: InferenceEstimate,
    constraints: dict[str, float],
    measured: bool = False,
) -> list[str]:
    """The broken constraints in words; ``measured`` when the figures come from a profile
    (the serving profile evaluator checks its trials with the same rules)."""
    w, out = spec.workload, []
    seen = "measured " if measured else ""
    if constraints["memory_excess_gib"] > 0:
        what = (
            "weights, KV cache, workspace and reserve"
            if measured
            else "weights, workspace and one request's KV cache"
        )
        out.append(
            f"out of memory: {seen}{what} need {est.memory_per_gpu_gib:.2f} GiB per GPU of "
            f"{est.memory_capacity_gib:.2f} GiB"
        )
    if constraints.get("ttft_slo_excess_ms", 0) > 0:
        out.append(f"{seen}TTFT {est.ttft_ms:.1f} ms exceeds the SLO of {w.ttft_ms:g} ms")
    if constraints.get("tpot_slo_excess_ms", 0) > 0:
        out.append(f"{seen}TPOT {est.tpot_ms:.2f} ms exceeds the SLO of {w.tpot_ms:g} ms")
    if constraints.get("request_rate_excess", 0) > 0:
        out.append(
            f"cannot keep up with {w.request_rate:g} requests/s: the queue grows without bound"
        )
    for key, bound in spec.limits.items():
        if constraints.get(key, 0) > 0:
            out.append(f"limit {key}={bound:g} not met")
    return out


def evaluate_inference_analytical(spec: InferenceJobSpec, config: InferenceConfig) -> Outcome:
    """Analytical estimate of one serving configuration, with its feasibility."""
    try:
        est = estimate_inference(spec.model, spec.cluster, spec.workload, config)
    except ValueError as exc:
        return Outcome(error=str(exc), feasible=False)
    metrics = est.metrics()
    constraints = slo_constraints(spec, est)
    constraints.update(limit_constraints(metrics, spec.limits))
    violations = slo_violations(spec, est, constraints)
    details = {
        "mode": config.mode,
        "batch_size": est.batch_size,
        "max_batch_size": est.max_batch_size,
        "gpus_used": est.gpus_used,
        "saturated": est.saturated,
        "fits": est.fits,
        "breakdown_ms": est.breakdown,
        "memory_breakdown_gib": est.memory_breakdown_gib,
        "evaluator_version": analytical_version(),
    }
    return Outcome(
        metrics=metrics,
        feasible=not violations,
        violations=violations,
        constraints=constraints,
        details=details,
    )


def estimate_inference_point(spec: InferenceJobSpec, config: InferenceConfig) -> dict[str, Any]:
    """`paretune estimate` for one serving config: every figure plus the breakdowns."""
    problems = build_inference_space(spec.model_copy(update={"space": None})).violations(config)
    if problems:
        return {"error": "config is invalid: " + "; ".join(problems)}
    est = estimate_inference(spec.model, spec.cluster, spec.workload, config)
    constraints = slo_constraints(spec, est)
    return {
        "kind": "inference",
        **est.model_dump(mode="json"),
        "meets_slos": not any(v > 0 for k, v in constraints.items() if k != "memory_excess_gib"),
    }


# -- recommendation ---------------------------------------------------------------------------


def _rank(trial: TrialRecord, objectives: Sequence[Objective]) -> tuple[Any, ...]:
    return (*(o.loss(trial.metrics[o.metric]) for o in objectives), trial.number)


def _slo_excess(trial: TrialRecord) -> float:
    """Relative distance to the SLOs (0 = met), for when no configuration meets them."""
    c = trial.details.get("constraints") or {}
    return sum(
        max(0.0, c.get(k, 0.0)) / max(trial.metrics.get(m, 1.0), 1e-9)
        for k, m in (("ttft_slo_excess_ms", "ttft_ms"), ("tpot_slo_excess_ms", "tpot_ms"))
    )


def _gain(
    best: TrialRecord, other: TrialRecord, objectives: Sequence[Objective]
) -> dict[str, float]:
    """Per objective, how much better the recommendation is than the runner-up (ratio - 1,
    positive = the recommendation wins)."""
    out = {}
    for o in objectives:
        a, b = best.metrics[o.metric], other.metrics[o.metric]
        if a > 0 and b > 0:
            out[o.metric] = round((a / b if o.direction == "max" else b / a) - 1.0, 4)
    return out


def _pick(
    objectives: Sequence[Objective], trials: list[TrialRecord]
) -> tuple[TrialRecord, list[TrialRecord], Any, str] | None:
    """(recommended trial, the pool it was chosen from, the ranking used, why)."""
    done = [t for t in trials if t.state == "complete"]
    feasible = [t for t in done if t.feasible]
    if feasible:
        best = min(feasible, key=lambda t: _rank(t, objectives))
        first = objectives[0]
        word = "lowest" if first.direction == "min" else "highest"
        reason = (
            f"{word} {first.metric} ({best.metrics[first.metric]:.4g}) among {len(feasible)} "
            "configurations that meet the SLOs, fit in memory and meet every limit"
        )
        return best, feasible, lambda t: _rank(t, objectives), reason
    fitting = [
        t for t in done if (t.details.get("constraints") or {}).get("memory_excess_gib", 1) <= 0
    ]
    if not fitting:
        return None
    key = lambda t: (_slo_excess(t), _rank(t, objectives))  # noqa: E731
    best = min(fitting, key=key)
    reason = "no configuration meets the SLOs; this one fits in memory and comes closest: "
    return best, fitting, key, reason + "; ".join(best.violations)


def _other_mode(
    best: TrialRecord, pool: list[TrialRecord], key: Any, objectives: Sequence[Objective]
) -> tuple[dict[str, Any] | None, str]:
    """The best trial of the other serving mode, its gain sentence (or why there is none)."""
    mode = best.config.get("mode", "aggregated")
    others = [t for t in pool if t.config.get("mode", "aggregated") != mode]
    if not others:
        other = "disaggregated" if mode == "aggregated" else "aggregated"
        return None, f"; no {other} configuration qualifies"
    runner = min(others, key=key)
    gain = _gain(best, runner, objectives)
    lead = objectives[0].metric
    sentence = ""
    if lead in gain:
        word = "better" if gain[lead] >= 0 else "worse"
        sentence = (
            f"; best {runner.config.get('mode')} alternative: trial {runner.number} with "
            f"{lead}={runner.metrics[lead]:.4g} (the recommendation is {abs(gain[lead]):.0%} "
            f"{word} on {lead})"
        )
    summary = {
        "mode": runner.config.get("mode"),
        "trial_number": runner.number,
        "config": runner.config,
        "metrics": runner.metrics,
        "gain": gain,
    }
    return summary, sentence


def recommend_inference(
    spec: InferenceJobSpec, front: list[TrialRecord], trials: list[TrialRecord]
) -> Recommendation | None:
    """The best configuration by the job's first objective (the cheapest with
    min:cost_per_million_tokens_usd, the fastest with max:output_tokens_per_s_per_gpu) among
    those meeting the SLOs and limits, with the best of the other serving mode beside it and
    the gain between them. When none meets the SLOs, the one closest to them that fits."""
    picked = _pick(spec.objectives, trials)
    if picked is None:
        return None
    best, pool, key, reason = picked
    other, sentence = _other_mode(best, pool, key, spec.objectives)
    return Recommendation(
        trial_number=best.number,
        config=best.config,
        metrics=best.metrics,
        reason=reason + sentence,
        details={**best.details, "other_mode": other},
    )


register_kind(
    JobKind(
        name="inference",
        build_space=build_inference_space,
        parse_config=InferenceConfig.model_validate,
        default_config=lambda spec: spec.config or InferenceConfig(),
        estimate=estimate_inference_point,
        evaluators={"analytical": evaluate_inference_analytical},
        recommend=recommend_inference,
        versions={"analytical": analytical_version()},
        exporters=dict(INFERENCE_EXPORTERS),
    )
)
