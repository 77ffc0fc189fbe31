"""Timed training steps of a shard on this process's device (imports torch: load lazily).

A step is timed in two parts: one micro-batch's forward + backward, and the optimizer step
(AdamW over the local shard). The evaluator multiplies the first by the number of micro-batches,
so a step with a hundred micro-batches costs one micro-batch here. Gradients stay allocated
between steps (``zero_grad(set_to_none=False)``), as in frameworks with a gradient buffer.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.profiling.device import PeakMemory
from cost_models.profiling.device import compute_dtype
from cost_models.profiling.device import device_name
from cost_models.profiling.device import pick_device
from cost_models.profiling.device import timed
from cost_models.profiling.shard import ShardSpec
from cost_models.profiling.torch_model import ShardModel
from cost_models.profiling.torch_model import make_batch


class StepMeasurement(BaseModel):
    """What timing one shard produced (seconds, bytes)."""

    model_config = ConfigDict(frozen=True)

    layers: int
    # The fastest timed step: other processes on a shared machine only ever add time, so the
    # minimum is the steadiest estimate of what the device does (all samples are kept).
    microbatch_s: float  # forward + backward of one micro-batch
    optimizer_s: float  # optimizer step
    microbatch_samples_s: list[float]
    peak_bytes: float  # whole profile (model, optimizer, steps) above the starting point
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    memory_method: str

    @property
    def state_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes

    @property
    def activation_bytes(self) -> float:
        """Peak beyond the model state: activations, workspaces, allocator slack."""
        return max(0.0, self.peak_bytes - self.state_bytes)


def _bytes(tensors: Any) -> float:
    return float(sum(t.numel() * t.element_size() for t in tensors if t is not None))


def _optimizer_bytes(opt: torch.optim.Optimizer) -> float:
    return _bytes(
        v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)
    )


_PRIMED: set[str] = set()
_PRIME_SHARD = ShardSpec(
    hidden_size=64,
    num_layers=1,
    moe_layers=0,
    heads=2,
    kv_heads=2,
    head_dim=32,
    ffn_hidden_size=128,
    vocab_size=128,
    with_embedding=True,
    micro_batch_size=1,
    seq_len=16,
    kv_len=16,
)


def _prime(device: torch.device) -> None:
    """One tiny step per process and device before any measurement, so one-time library
    set-up (kernel JIT, thread pools, the CUDA context) counts in neither time nor memory."""
    if str(device) in _PRIMED:
        return
    _PRIMED.add(str(device))
    model = ShardModel(_PRIME_SHARD).to(device)
    inputs, labels = make_batch(_PRIME_SHARD, device, torch.Generator().manual_seed(0))
    dtype = compute_dtype(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = model(inputs, labels)
    loss.backward()
    torch.optim.AdamW(model.parameters(), foreach=True).step()


def measure_shard(
    shard: ShardSpec, device: torch.device, warmup_steps: int, timed_steps: int
) -> StepMeasurement:
    """Build ``shard`` on ``device`` and time warm-up + timed training steps."""
    _prime(device)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    memory = PeakMemory(device)
    memory.start()
    model = ShardModel(shard).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    inputs, labels = make_batch(shard, device, generator)
    dtype = compute_dtype(device)
    autocast = dtype != torch.float32

    def forward_backward() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = model(inputs, labels)
        loss.backward()

    def optimizer_step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=False)

    micro, optim = [], []
    for step in range(warmup_steps + timed_steps):
        t_micro = timed(device, forward_backward)
        t_opt = timed(device, optimizer_step)
        if step >= warmup_steps:
            micro.append(t_micro)
            optim.append(t_opt)
    peak = memory.peak_bytes()
    params = list(model.parameters())
    return StepMeasurement(
        layers=shard.num_layers,
        microbatch_s=min(micro),
        optimizer_s=min(optim),
        microbatch_samples_s=micro,
        peak_bytes=peak,
        weights_bytes=_bytes(params),
        grads_bytes=_bytes(p.grad for p in params),
        optimizer_bytes=_optimizer_bytes(opt),
        memory_method=memory.method,
    )


class ShardProfile(BaseModel):
    """Measurements of a planned shard (and of its 0-layer base when layers were scaled)."""

    model_config = ConfigDict(frozen=True)

    main: StepMeasurement
    base: StepMeasurement | None = None
    device: str
    device_kind: str
    dtype: str
    threads: int
    torch_version: str
    niceness: int = 0  # of the profiling process (Ray workers run at 15)


def profile_shards(
    shard: ShardSpec,
    base: ShardSpec | None,
    device_setting: str,
    warmup_steps: int,
    timed_steps: int,
    threads: int,
) -> ShardProfile:
    """Time ``shard`` (and ``base``) on the device ``device_setting`` resolves to, with
    ``threads`` CPU threads (restored afterwards: in-process profiles share the process)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        device = pick_device(device_setting)
        main = measure_shard(shard, device, warmup_steps, timed_steps)
        base_m = measure_shard(base, device, warmup_steps, timed_steps) if base else None
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    return ShardProfile(
        main=main,
        base=base_m,
        device=device_name(device),
        device_kind=device.type,
        dtype=str(compute_dtype(device)).removeprefix("torch."),
        threads=used_threads,
        niceness=os.getpriority(os.PRIO_PROCESS, 0),
        torch_version=torch.__version__,
    )
