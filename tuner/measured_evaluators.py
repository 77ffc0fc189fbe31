"""Evaluators that measure: ``profile`` (a real PyTorch shard of a training or serving
candidate), ``hybrid`` (the analytical search, then profiles of its front) and ``command`` (the
user's own benchmark), registered with both job kinds.

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
from cost_models.profiling.serving_evaluate import SERVING_PROFILE_VERSION
from cost_models.profiling.serving_evaluate import profile_serving
from search_spaces.config import TrainingConfig
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.inference_config import InferenceConfig
from search_spaces.job_spec import InferenceJobSpec
from search_spaces.job_spec import TrainingJobSpec
from tuner.command_evaluator import COMMAND_DISPATCH
from tuner.command_evaluator import evaluate_with_command
from tuner.evaluation import Outcome
from tuner.hybrid import run_hybrid_phase
from tuner.inference_kind import analytical_version as inference_analytical_version
from tuner.inference_kind import evaluate_inference_analytical
from tuner.kinds import Dispatch
from tuner.kinds import UnsupportedError
from tuner.kinds import register_evaluator
from tuner.measured_outcome import measured_outcome
from tuner.measured_outcome import serving_outcome
from tuner.training_kind import analytical_version
from tuner.training_kind import evaluate_training_analytical
from tuner.training_kind import evaluate_training_analytical_batch

TASK_TIMEOUT_GRACE_S = 120.0  # the evaluator's own timeout fires first; Ray's is a backstop
COMMAND_VERSION = "command-0.1"


def _failed_profile(exc: ValueError | ProfilingError) -> Outcome:
    """A profile that did not produce figures: a configuration the model rejects (its
    message), or a run that failed (timeout, crash, out of memory: its kind as the cause)."""
    if isinstance(exc, ProfilingError):
        return Outcome(error=f"{exc.kind}: {exc}", feasible=False, details={"failure": exc.kind})
    return Outcome(error=str(exc), feasible=False)


def evaluate_training_profile(spec: TrainingJobSpec, config: TrainingConfig) -> Outcome:
    """Run the configuration's per-GPU shard for real (see cost_models.profiling.evaluate)."""
    settings = spec.evaluator
    assert isinstance(settings, ProfileEvaluatorSpec)
    try:
        result = profile_training(spec.model, spec.cluster, spec.workload, config, settings)
    except (ValueError, ProfilingError) as exc:
        return _failed_profile(exc)
    return measured_outcome(
        spec, result.metrics, result.predicted, result.memory_capacity_gib, result.details
    )


def evaluate_inference_profile(spec: InferenceJobSpec, config: InferenceConfig) -> Outcome:
    """Prefill and decode the configuration's per-GPU shard for real (see
    cost_models.profiling.serving_evaluate)."""
    settings = spec.evaluator
    assert isinstance(settings, ProfileEvaluatorSpec)
    try:
        result = profile_serving(spec.model, spec.cluster, spec.workload, config, settings)
    except (ValueError, ProfilingError) as exc:
        return _failed_profile(exc)
    return serving_outcome(
        spec, result.metrics, result.predicted, result.measured_estimate, result.details
    )


def _profile_options(
    spec: TrainingJobSpec | InferenceJobSpec, resources: dict[str, Any]
) -> dict[str, Any]:
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


SERVING_ONLY = ("max_context_len", "prefill_chunk_tokens")
TRAINING_ONLY = ("max_hidden_size",)


def _settings_check(ignored: tuple[str, ...], kind: str, instead: str) -> Any:
    """A Dispatch check rejecting profile settings this kind's profile would ignore, so a
    setting never silently does nothing."""

    def check(spec: TrainingJobSpec | InferenceJobSpec) -> None:
        s = spec.evaluator
        for name in ignored:
            if getattr(s, name, None) is not None:
                raise ValueError(
                    f"evaluator.{name} does not apply to {kind} jobs; remove it ({instead})"
                )

    return check


_TRAINING_CHECK = _settings_check(
    SERVING_ONLY, "training", "training profiles cap layers and the hidden size"
)
_SERVING_CHECK = _settings_check(
    TRAINING_ONLY,
    "inference",
    "serving profiles shrink layers, batch and context instead: max_layers, max_context_len",
)
_MEASURED = Dispatch(chunk_size=1, task_options=_profile_options, check=_TRAINING_CHECK)
_MEASURED_SERVING = Dispatch(chunk_size=1, task_options=_profile_options, check=_SERVING_CHECK)
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
    dispatch=Dispatch(finish=run_hybrid_phase, check=_TRAINING_CHECK),
    batch_fn=evaluate_training_analytical_batch,  # the analytical phase, vectorised
)
register_evaluator(
    "inference",
    "profile",
    evaluate_inference_profile,
    version=f"{SERVING_PROFILE_VERSION}+{inference_analytical_version()}",
    dispatch=_MEASURED_SERVING,
)
register_evaluator(
    "inference",
    "hybrid",
    evaluate_inference_analytical,
    version=f"hybrid-0.1+{inference_analytical_version()}",
    dispatch=Dispatch(finish=run_hybrid_phase, check=_SERVING_CHECK),
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
