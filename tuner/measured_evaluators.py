"""Evaluators that measure: ``profile`` (a real PyTorch shard of a training candidate),
``hybrid`` (the analytical search, then profiles of its front) and ``command`` (the user's own
benchmark, for every kind), registered with the job kinds.

Each trial of a measuring evaluator is one executor task with the resources it needs (a GPU
when the cluster has them, the command's own request); the analytical model's figures ride
along as ``details["predicted"]`` so every measured trial shows prediction and measurement
side by side. Nothing here imports torch: the profile runs in ``cost_models.profiling``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cost_models.profiling import ProfilingError
from cost_models.profiling.evaluate import PROFILE_VERSION
from cost_models.profiling.evaluate import profile_training
from search_spaces.config import TrainingConfig
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.job_spec import TrainingJobSpec
from tuner.command_evaluator import COMMAND_DISPATCH
from tuner.command_evaluator import evaluate_with_command
from tuner.evaluation import Outcome
from tuner.hybrid import run_hybrid_phase
from tuner.kinds import Dispatch
from tuner.kinds import UnsupportedError
from tuner.kinds import register_evaluator
from tuner.measured_outcome import measured_outcome
from tuner.training_kind import analytical_version
from tuner.training_kind import evaluate_training_analytical

TASK_TIMEOUT_GRACE_S = 120.0  # the evaluator's own timeout fires first; Ray's is a backstop
COMMAND_VERSION = "command-0.1"


def evaluate_training_profile(spec: TrainingJobSpec, config: TrainingConfig) -> Outcome:
    """Run the configuration's per-GPU shard for real (see cost_models.profiling.evaluate)."""
    settings = spec.evaluator
    assert isinstance(settings, ProfileEvaluatorSpec)
    try:
        result = profile_training(spec.model, spec.cluster, spec.workload, config, settings)
    except ValueError as exc:  # the configuration itself is invalid for this model
        return Outcome(error=str(exc), feasible=False)
    except ProfilingError as exc:
        return Outcome(error=f"{exc.kind}: {exc}", feasible=False, details={"failure": exc.kind})
    return measured_outcome(
        spec, result.metrics, result.predicted, result.memory_capacity_gib, result.details
    )


def _profile_options(spec: TrainingJobSpec, resources: dict[str, Any]) -> dict[str, Any]:
    """One device per trial: a GPU when the cluster has them (or cuda is asked for)."""
    s = spec.evaluator
    assert isinstance(s, ProfileEvaluatorSpec)
    wants_gpu = s.device == "cuda" or (s.device == "auto" and resources.get("GPU", 0) >= 1)
    return {
        "num_cpus": s.num_cpus,
        "num_gpus": 1 if wants_gpu else 0,
        "timeout_s": s.timeout_s + TASK_TIMEOUT_GRACE_S,
        "max_retries": 2,
    }


_MEASURED = Dispatch(chunk_size=1, task_options=_profile_options)
register_evaluator(
    "training",
    "profile",
    evaluate_training_profile,
    version=f"{PROFILE_VERSION}+{analytical_version()}",
    dispatch=_MEASURED,
)
register_evaluator(
    "training",
    "hybrid",
    evaluate_training_analytical,
    version=f"hybrid-0.1+{analytical_version()}",
    dispatch=Dispatch(finish=run_hybrid_phase),
)
for kind in ("training", "inference"):
    with contextlib.suppress(UnsupportedError):  # a version without the inference kind
        register_evaluator(
            kind,
            "command",
            evaluate_with_command,
            version=COMMAND_VERSION,
            dispatch=COMMAND_DISPATCH,
        )
