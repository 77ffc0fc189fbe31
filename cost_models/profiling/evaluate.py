"""The ``profile`` evaluator of training configurations: measure the shard, model the rest.

One device runs the candidate's per-GPU shard (see ``shard.py``). What one device cannot run
(the collectives between GPUs and the pipeline schedule) comes from the analytical model, and
the result keeps the two apart: ``details["profile"]`` holds what was timed, ``modeled_s`` the
terms added from the model, and ``predicted`` the analytical model's own figures.

    step = m * t_microbatch + bubble + communication (modeled) + t_optimizer / shards

where the bubble is ``(pp-1)/(m*vpp)`` of the per-micro-batch chain (measured compute plus the
modeled per-micro-batch communication), and the optimizer step is divided over its shards
when the optimizer state is sharded (zero1-3). Peak memory is the measured model state (with
the sharded parts divided over data-parallel ranks) plus the measured activation peak times
the micro-batches a 1F1B pipeline keeps in flight.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.profiling.calibrated import calibrated_inputs
from cost_models.profiling.runner import ProfileRequest
from cost_models.profiling.runner import ProfileResponse
from cost_models.profiling.runner import profile_in_child
from cost_models.profiling.runner import profile_in_process
from cost_models.training import TrainingEstimate
from cost_models.training import estimate_training
from search_spaces.config import TrainingConfig
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.specs import ClusterSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

GIB = float(1 << 30)
NOT_COMMUNICATION = ("compute", "optimizer", "pipeline_bubble")
PROFILE_VERSION = "profile-0.1"


class ProfiledTraining(BaseModel):
    """Measured metrics of one configuration, the analytical prediction, and the details."""

    model_config = ConfigDict(frozen=True)

    metrics: dict[str, float]
    predicted: dict[str, float]
    memory_capacity_gib: float
    details: dict[str, Any]


def _to_stage(main: float, base: float | None, layers: int, stage_layers: int) -> float:
    """Scale a measurement of ``layers`` layers to the stage's ``stage_layers``, using the
    0-layer ``base`` run to separate the per-layer part from embedding, head and loss."""
    if base is None or layers >= stage_layers or layers == 0:
        return main
    return base + max(0.0, main - base) / layers * stage_layers


def _stage_figures(response: ProfileResponse) -> dict[str, float]:
    """Micro-batch and optimizer seconds and memory bytes of the full stage."""
    plan, prof = response.plan, response.profile
    main: dict[str, Any] = prof["main"]  # type: ignore[assignment]
    base: dict[str, Any] | None = prof.get("base")  # type: ignore[assignment]
    out = {}
    for key in ("microbatch_s", "optimizer_s", "weights_bytes", "grads_bytes", "optimizer_bytes"):
        out[key] = _to_stage(
            main[key], base[key] if base else None, plan.shard.num_layers, plan.stage_layers
        )
    state = main["weights_bytes"] + main["grads_bytes"] + main["optimizer_bytes"]
    activations = max(0.0, main["peak_bytes"] - state)
    base_act = None
    if base:
        base_state = base["weights_bytes"] + base["grads_bytes"] + base["optimizer_bytes"]
        base_act = max(0.0, base["peak_bytes"] - base_state)
    out["activation_bytes"] = _to_stage(
        activations, base_act, plan.shard.num_layers, plan.stage_layers
    )
    for key in ("microbatch_s", "optimizer_s"):
        out[key] *= plan.time_scale
    for key in ("weights_bytes", "grads_bytes", "optimizer_bytes", "activation_bytes"):
        out[key] *= plan.memory_scale
    return out


def _inflight_microbatches(config: TrainingConfig, m: int) -> float:
    """Micro-batches whose activations the first pipeline rank holds at its peak (1F1B)."""
    if config.pp == 1:
        return 1.0
    held = float(min(config.pp, m))
    return held * (1.0 + (config.pp - 1) / (config.pp * config.vpp)) if config.vpp > 1 else held


def _memory_gib(stage: dict[str, float], config: TrainingConfig, est: TrainingEstimate) -> float:
    d = max(1, est.dp * config.cp)
    shard = {"none": (1, 1, 1), "zero1": (1, 1, d), "zero2": (1, d, d), "zero3": (d, d, d)}
    fw, fg, fo = shard[config.sharding]
    state = stage["weights_bytes"] / fw + stage["grads_bytes"] / fg + stage["optimizer_bytes"] / fo
    act = stage["activation_bytes"] * _inflight_microbatches(config, est.num_microbatches)
    return (state + act) / GIB


def _step(
    stage: dict[str, float], config: TrainingConfig, est: TrainingEstimate
) -> tuple[float, dict[str, float]]:
    """Step seconds from the measured stage and the modeled communication."""
    m = est.num_microbatches
    comm = {k: v for k, v in est.breakdown.items() if k not in NOT_COMMUNICATION}
    chain = m * stage["microbatch_s"] + sum(v for k, v in comm.items() if k != "data_parallel")
    bubble = (config.pp - 1) / (m * config.vpp) * chain
    shards = max(1, est.dp * config.cp) if config.sharding != "none" else 1
    optimizer = stage["optimizer_s"] / shards
    step = m * stage["microbatch_s"] + sum(comm.values()) + bubble + optimizer
    return step, {**comm, "pipeline_bubble": bubble}


def request_for(
    model: ModelSpec, workload: TrainingWorkload, config: TrainingConfig, s: ProfileEvaluatorSpec
) -> ProfileRequest:
    return ProfileRequest(
        model=model,
        workload=workload,
        config=config,
        warmup_steps=s.warmup_steps,
        timed_steps=s.timed_steps,
        max_layers=s.max_layers,
        max_hidden_size=s.max_hidden_size,
        device=s.device,
        threads=s.num_cpus,
    )


def profile_training(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    settings: ProfileEvaluatorSpec,
) -> ProfiledTraining:
    """Measure ``config`` (ValueError when the model rejects it, ProfilingError when the run
    fails) and combine it with the modeled communication."""
    model_cluster, calibration = calibrated_inputs(cluster, settings.calibration)
    est = estimate_training(model, model_cluster, workload, config, calibration)
    request = request_for(model, workload, config, settings)
    if settings.isolate:
        response = profile_in_child(request, settings.timeout_s)
    else:
        response = profile_in_process(request)
    stage = _stage_figures(response)
    step, modeled = _step(stage, config, est)
    memory = _memory_gib(stage, config, est)
    ratio = est.step_time_s / step
    metrics = {
        "tokens_per_s_per_gpu": est.tokens_per_s_per_gpu * ratio,
        "tokens_per_s": est.tokens_per_s * ratio,
        "step_time_s": step,
        "mfu": est.mfu * ratio,
        "memory_per_gpu_gib": memory,
        "cost_per_million_tokens_usd": est.cost_per_million_tokens_usd / ratio,
    }
    return ProfiledTraining(
        metrics=metrics,
        predicted=est.metrics(),
        memory_capacity_gib=cluster.gpu.memory_gib,
        details=_details(response, stage, modeled, settings),
    )


def _details(
    response: ProfileResponse,
    stage: dict[str, float],
    modeled: dict[str, float],
    settings: ProfileEvaluatorSpec,
) -> dict[str, Any]:
    prof, plan = response.profile, response.plan
    main: dict[str, Any] = prof["main"]  # type: ignore[assignment]
    return {
        "profile": {
            "microbatch_s": stage["microbatch_s"],
            "optimizer_s": stage["optimizer_s"],
            "microbatch_samples_s": main["microbatch_samples_s"],
            "peak_memory_gib": main["peak_bytes"] / GIB,
            "memory_method": main["memory_method"],
            "stage_memory_gib": {k: v / GIB for k, v in stage.items() if k.endswith("_bytes")},
        },
        "modeled_s": modeled,
        "device": prof["device"],
        "device_kind": prof["device_kind"],
        "dtype": prof["dtype"],
        "threads": prof["threads"],
        "niceness": prof.get("niceness"),
        "torch_version": prof["torch_version"],
        "shard": plan.shard.model_dump(mode="json"),
        "stage_layers": plan.stage_layers,
        "scaled": bool(plan.notes),
        "notes": plan.notes,
        "isolated": settings.isolate,
        "calibration": settings.calibration.profile_name if settings.calibration else None,
        "evaluator_version": PROFILE_VERSION,
    }
