"""A hardware profile: micro-benchmark results of one device, as stored in the database.

Plain data (no torch): GEMMs and attention by shape and dtype, memory copies by size,
collectives across local processes by operation and message size, and a few single-device
training steps of small models (the shapes the calibration is fitted on). The figures depend
on the device, its driver and the library versions, which the profile records as its key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from search_spaces.config import TrainingConfig
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

# Busbw / algbw per collective on n ranks (nccl-tests doc/PERFORMANCE.md), and the ring steps
# each takes (the latency term of the alpha-beta model).
BUS_FACTOR: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
}
RING_STEPS: dict[str, Callable[[int], int]] = {
    "all_reduce": lambda n: 2 * (n - 1),
    "all_gather": lambda n: n - 1,
    "reduce_scatter": lambda n: n - 1,
    "all_to_all": lambda n: n - 1,
}


class _Bench(BaseModel):
    model_config = ConfigDict(frozen=True)


class GemmBench(_Bench):
    m: int
    n: int
    k: int
    dtype: str
    time_s: float
    flops_per_s: float


class AttentionBench(_Bench):
    """Forward + backward of causal SDPA; FLOPs counted as 7 matmuls over the causal pairs."""

    batch: int
    heads: int
    seq_len: int
    head_dim: int
    dtype: str
    time_s: float
    flops_per_s: float


class MemoryBench(_Bench):
    """A tensor copy: ``size_bytes`` read and ``size_bytes`` written."""

    size_bytes: int
    time_s: float
    bytes_per_s: float


class CollectiveBench(_Bench):
    """One collective over ``world_size`` local processes (nccl-tests' size conventions)."""

    op: str  # all_reduce | all_gather | reduce_scatter | all_to_all
    backend: str
    world_size: int
    size_bytes: int
    time_s: float
    algbw_bytes_per_s: float
    busbw_bytes_per_s: float


class StepBench(_Bench):
    """One device's training step of a small model (one micro-batch, then the optimizer)."""

    model: ModelSpec
    workload: TrainingWorkload
    config: TrainingConfig
    microbatch_s: float
    optimizer_s: float
    peak_bytes: float

    @property
    def step_s(self) -> float:
        return self.microbatch_s + self.optimizer_s


class HardwareProfile(_Bench):
    name: str
    device: str
    device_kind: str
    driver_version: str
    library_versions: dict[str, str]
    host: str
    threads: int = Field(description="CPU threads the benchmarks ran with.")
    compute_dtype: str = Field(description="What bf16 training runs in on this device.")
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    gemm: list[GemmBench] = Field(default_factory=list)
    attention: list[AttentionBench] = Field(default_factory=list)
    memory: list[MemoryBench] = Field(default_factory=list)
    collectives: list[CollectiveBench] = Field(default_factory=list)
    steps: list[StepBench] = Field(default_factory=list)
    duration_s: float = 0.0
