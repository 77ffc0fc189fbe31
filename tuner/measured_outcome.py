"""Outcomes of measured trials: feasibility from what was measured, and the analytical
prediction kept beside the measurement (``details["predicted"]`` / ``details["measured"]``).

Training trials are feasible when the measured memory fits and the limits are met; serving
trials also when the measured TTFT and TPOT meet the workload's SLOs and the deployment keeps
up with an open-loop request rate (the same constraints the analytical inference kind sets).
"""

from __future__ import annotations

from typing import Any

from cost_models.inference import InferenceEstimate
from tuner.evaluation import Outcome
from tuner.evaluation import limit_constraints


def prediction_errors(predicted: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
    """(predicted - measured) / measured per metric both have (positive = over-predicted)."""
    return {k: (predicted[k] - v) / v for k, v in measured.items() if k in predicted and v}


def _with_prediction(
    metrics: dict[str, float],
    predicted: dict[str, float],
    constraints: dict[str, float],
    violations: list[str],
    details: dict[str, Any],
) -> Outcome:
    """The trial's outcome, with the prediction, the measurement and their error beside."""
    details = {
        **details,
        "measured": metrics,
        "predicted": predicted,
        "prediction_error": prediction_errors(predicted, metrics),
    }
    return Outcome(
        metrics=metrics,
        feasible=not violations,
        violations=violations,
        constraints=constraints,
        details=details,
    )


def measured_outcome(
    spec: Any,
    metrics: dict[str, float],
    predicted: dict[str, float],
    capacity_gib: float,
    details: dict[str, Any],
) -> Outcome:
    """Feasible when the measured memory fits the device and the job's limits are met."""
    constraints: dict[str, float] = {}
    violations: list[str] = []
    if "memory_per_gpu_gib" in metrics:
        constraints["memory_excess_gib"] = metrics["memory_per_gpu_gib"] - capacity_gib
        if constraints["memory_excess_gib"] > 0:
            violations.append(
                f"out of memory: measured {metrics['memory_per_gpu_gib']:.2f} GiB per device "
                f"of {capacity_gib:.2f} GiB"
            )
    constraints.update(limit_constraints(metrics, spec.limits))
    for key in spec.limits:
        if constraints[key] > 0:
            violations.append(f"limit {key}={spec.limits[key]:g} not met")
    return _with_prediction(metrics, predicted, constraints, violations, details)


def serving_outcome(
    spec: Any,
    metrics: dict[str, float],
    predicted: dict[str, float],
    measured: InferenceEstimate,
    details: dict[str, Any],
) -> Outcome:
    """A measured serving trial: ``measured`` is the analytical estimate with the measured
    TTFT, TPOT, memory and saturation in place, checked like an analytical one."""
    from tuner.inference_kind import slo_constraints
    from tuner.inference_kind import slo_violations

    constraints = slo_constraints(spec, measured)
    constraints.update(limit_constraints(metrics, spec.limits))
    violations = slo_violations(spec, measured, constraints, measured=True)
    return _with_prediction(metrics, predicted, constraints, violations, details)
