"""Run one serving profile (one or two pools) in this process or in a fresh child process.

The same contract as ``runner`` for training profiles: the child (``python -m
cost_models.profiling.serving_runner``, request as JSON on stdin, response or error as the last
stdout line) measures its own peak memory, and an out-of-memory kill, a crash or a hang ends
only the child, which the parent reports as the trial's cause. Torch is imported only inside
the functions that run the profile.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.inference_terms import WorkerShape
from cost_models.profiling.runner import ProfilingError
from cost_models.profiling.runner import child_main
from cost_models.profiling.runner import run_in_child
from cost_models.profiling.serving_shard import CPU_MAX_CONTEXT_LEN
from cost_models.profiling.serving_shard import Role
from cost_models.profiling.serving_shard import ServingPlan
from cost_models.profiling.serving_shard import plan_serving
from search_spaces.specs import ModelSpec


class PoolRequest(BaseModel):
    """One pool to profile: its worker shape, what it does, and its running requests."""

    model_config = ConfigDict(frozen=True)

    role: Role
    tp: int = 1
    pp: int = 1
    ep: int = 1
    attention_dp: int = 1
    batch_per_rank: float = 1.0

    @property
    def shape(self) -> WorkerShape:
        return WorkerShape(tp=self.tp, pp=self.pp, ep=self.ep, attention_dp=self.attention_dp)


class ServingProfileRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: ModelSpec
    pools: list[PoolRequest]
    input_len: int
    output_len: int
    kv_dtype: str  # the requested KV-cache format (bf16, fp8, int4)
    chunk_tokens: int
    warmup_steps: int
    timed_steps: int
    max_layers: int
    max_context_len: int | None = None  # None: CPU_MAX_CONTEXT_LEN on a CPU, memory on a GPU
    device: str = "auto"
    threads: int = 1


class PoolProfile(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    plan: ServingPlan
    main: dict[str, Any]  # serving_measure.ServingMeasurement as JSON
    base: dict[str, Any] | None = None  # the 0-layer run, when layers were scaled


class ServingProfileResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    pools: list[PoolProfile]
    device: str
    device_kind: str
    dtype: str  # weights and activations
    kv_dtype: str  # what the cache was stored in
    threads: int
    niceness: int
    torch_version: str


def _profile_pool(request: ServingProfileRequest, pool: PoolRequest, device: Any) -> PoolProfile:
    import torch

    from cost_models.profiling.device import compute_dtype
    from cost_models.profiling.device import memory_budget_bytes
    from cost_models.profiling.serving_measure import kv_store_dtype
    from cost_models.profiling.serving_measure import measure_serving

    dtype = compute_dtype(device)
    kv_dtype = kv_store_dtype(request.kv_dtype, dtype, device)
    cap = request.max_context_len
    if cap is None and device.type == "cpu":
        cap = CPU_MAX_CONTEXT_LEN
    steps = request.warmup_steps + request.timed_steps
    plan = plan_serving(
        request.model,
        pool.shape,
        role=pool.role,
        batch_per_rank=pool.batch_per_rank,
        input_len=request.input_len,
        output_len=request.output_len,
        decode_steps=steps,
        max_layers=request.max_layers,
        max_context_len=cap,
        chunk_tokens=request.chunk_tokens,
        budget_bytes=memory_budget_bytes(device),
        weight_bytes=float(torch.tensor([], dtype=dtype).element_size()),
        kv_bytes=float(torch.tensor([], dtype=kv_dtype).element_size()),
    )
    s = plan.shard
    batches = [s.batch] + ([max(1, s.batch // 2)] if plan.scaled_batch and s.batch > 1 else [])
    lengths = [s.input_len]
    if plan.scaled_context and s.input_len >= 4:
        lengths = [s.input_len // 2, s.input_len]  # the full one last: the decode reads it
    args = (device, request.warmup_steps, request.timed_steps, kv_dtype, batches, lengths)
    main = measure_serving(s, *args)
    base = None
    if plan.scaled_layers:
        zero = s.shard.model_copy(update={"num_layers": 0, "moe_layers": 0})
        base = measure_serving(s.model_copy(update={"shard": zero}), *args)
    return PoolProfile(
        role=pool.role,
        plan=plan,
        main=main.model_dump(mode="json"),
        base=base.model_dump(mode="json") if base else None,
    )


def profile_serving_in_process(request: ServingProfileRequest) -> ServingProfileResponse:
    """Plan and time every pool of the request on this process's device."""
    import torch

    from cost_models.profiling.device import DeviceUnavailableError
    from cost_models.profiling.device import compute_dtype
    from cost_models.profiling.device import device_name
    from cost_models.profiling.device import pick_device
    from cost_models.profiling.serving_measure import kv_store_dtype
    from cost_models.profiling.serving_measure import niceness
    from cost_models.profiling.serving_measure import with_threads

    try:
        device = pick_device(request.device)
    except DeviceUnavailableError as exc:
        raise ProfilingError("device", str(exc)) from None

    def run() -> list[PoolProfile]:
        return [_profile_pool(request, pool, device) for pool in request.pools]

    try:
        pools, threads = with_threads(request.threads, run)
    except ProfilingError:
        raise
    except (MemoryError, RuntimeError) as exc:
        text = str(exc).lower()
        if isinstance(exc, MemoryError) or "out of memory" in text or "allocate memory" in text:
            raise ProfilingError("oom", f"out of memory on {device.type}: {exc}") from None
        raise
    dtype = compute_dtype(device)
    assert isinstance(pools, list)
    return ServingProfileResponse(
        pools=pools,
        device=device_name(device),
        device_kind=device.type,
        dtype=str(dtype).removeprefix("torch."),
        kv_dtype=str(kv_store_dtype(request.kv_dtype, dtype, device)).removeprefix("torch."),
        threads=threads,
        niceness=niceness(),
        torch_version=torch.__version__,
    )


def profile_serving_in_child(
    request: ServingProfileRequest, timeout_s: float
) -> ServingProfileResponse:
    """Run the profile in a fresh Python process; map its fate to a ProfilingError."""
    module = "cost_models.profiling.serving_runner"
    payload = run_in_child(module, request, request.threads, timeout_s)
    return ServingProfileResponse.model_validate(payload)


def main() -> int:
    return child_main(ServingProfileRequest.model_validate_json, profile_serving_in_process)


if __name__ == "__main__":
    sys.exit(main())
