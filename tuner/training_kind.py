"""The training job kind: TrainingSpace, TrainingConfig, the analytical training model."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cost_models
from cost_models import EVALUATOR_VERSION
from cost_models import estimate_training
from cost_models.profiling.calibrated import calibrated_inputs
from cost_models.vectorised import estimate_training_batch
from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.training_space import TrainingSpace
from tuner.evaluation import Outcome
from tuner.evaluation import limit_constraints
from tuner.exporters import TRAINING_EXPORTERS
from tuner.kinds import JobKind
from tuner.kinds import register_kind


def analytical_version() -> str:
    """The model's version plus a hash of its calibration data: refitting the constants
    changes every evaluation key, so no stale estimate is reused."""
    text = (Path(cost_models.__file__).parent / "calibration.yaml").read_bytes()
    return f"{EVALUATOR_VERSION}+{hashlib.sha256(text).hexdigest()[:8]}"


def build_training_space(spec: TrainingJobSpec) -> TrainingSpace:
    return TrainingSpace(spec.model, spec.cluster, spec.workload, spec.space)


def evaluate_training_analytical(spec: TrainingJobSpec, config: TrainingConfig) -> Outcome:
    """Analytical estimate of one training configuration, with its feasibility."""
    # a fitted hardware profile, when the job names one, replaces datasheet and constants
    cluster, calibration = calibrated_inputs(
        spec.cluster, getattr(spec.evaluator, "calibration", None)
    )
    try:
        est = estimate_training(spec.model, cluster, spec.workload, config, calibration)
    except ValueError as exc:
        return Outcome(error=str(exc), feasible=False)
    return _analytical_outcome(
        spec,
        est.metrics(),
        est.memory_capacity_gib,
        est.binding_memory_term,
        {
            "breakdown_s": est.breakdown,
            "memory_breakdown_gib": est.memory_breakdown_gib,
            "binding_memory_term": est.binding_memory_term,
            "dp": est.dp,
            "num_microbatches": est.num_microbatches,
        },
    )


def evaluate_training_analytical_batch(
    spec: TrainingJobSpec, configs: list[TrainingConfig]
) -> list[Outcome]:
    """``evaluate_training_analytical`` of each config, through the vectorised model in one
    call: the same metrics, constraints, violations and details (the equality of the two
    models is tested in tests/cost_models/test_cm_vectorised.py)."""
    cluster, calibration = calibrated_inputs(
        spec.cluster, getattr(spec.evaluator, "calibration", None)
    )
    batch = estimate_training_batch(spec.model, cluster, spec.workload, configs, calibration)
    metrics = {k: v.tolist() for k, v in batch.metrics().items()}
    breakdown = {k: v.tolist() for k, v in batch.breakdown.items()}
    memory = {k: v.tolist() for k, v in batch.memory_breakdown_gib.items()}
    dp, micro = batch.dp.tolist(), batch.num_microbatches.tolist()
    outcomes = []
    for i, valid in enumerate(batch.valid.tolist()):
        if not valid:
            outcomes.append(Outcome(error=batch.error(i), feasible=False))
            continue
        binding = batch.binding_term(i)
        details = {
            "breakdown_s": {k: v[i] for k, v in breakdown.items()},
            "memory_breakdown_gib": {k: v[i] for k, v in memory.items()},
            "binding_memory_term": binding,
            "dp": dp[i],
            "num_microbatches": micro[i],
        }
        row = {k: v[i] for k, v in metrics.items()}
        outcomes.append(_analytical_outcome(spec, row, batch.memory_capacity_gib, binding, details))
    return outcomes


def _analytical_outcome(
    spec: TrainingJobSpec,
    metrics: dict[str, float],
    capacity_gib: float,
    binding_memory_term: str,
    details: dict[str, Any],
) -> Outcome:
    """The trial outcome of one estimate: memory and limit constraints, violations."""
    memory_gib = metrics["memory_per_gpu_gib"]
    constraints = {"memory_excess_gib": memory_gib - capacity_gib}
    constraints.update(limit_constraints(metrics, spec.limits))
    violations = []
    if memory_gib > capacity_gib:  # TrainingEstimate.fits is memory <= capacity
        violations.append(
            f"out of memory: needs {memory_gib:.1f} GiB per GPU of "
            f"{capacity_gib:.1f} GiB (largest term: {binding_memory_term})"
        )
    for key, value in constraints.items():
        if key in spec.limits and value > 0:
            violations.append(f"limit {key}={spec.limits[key]:g} not met")
    return Outcome(
        metrics=metrics,
        feasible=not violations,
        violations=violations,
        constraints=constraints,
        details={**details, "evaluator_version": EVALUATOR_VERSION},
    )


def estimate_training_point(spec: TrainingJobSpec, config: TrainingConfig) -> dict[str, Any]:
    """`paretune estimate` for one training config: every figure plus the breakdowns."""
    problems = build_training_space(spec.model_copy(update={"space": None})).violations(config)
    if problems:
        return {"error": "config is invalid: " + "; ".join(problems)}
    est = estimate_training(spec.model, spec.cluster, spec.workload, config)
    return {"kind": "training", **est.model_dump(mode="json")}


register_kind(
    JobKind(
        name="training",
        build_space=build_training_space,
        parse_config=TrainingConfig.model_validate,
        default_config=lambda spec: spec.config or TrainingConfig(),
        estimate=estimate_training_point,
        evaluators={"analytical": evaluate_training_analytical},
        batch_evaluators={"analytical": evaluate_training_analytical_batch},
        versions={"analytical": analytical_version()},
        exporters=dict(TRAINING_EXPORTERS),
    )
)
