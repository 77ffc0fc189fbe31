"""A validated training configuration with the sizes every cost term needs.

``make_plan`` rejects what the model cannot express (ValueError with a sentence a person can
act on) and derives the data-parallel size, the micro-batch count, the per-rank sequence and
the per-GPU widths once, so the compute, communication and memory terms read them from one
place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from cost_models.calibration import Calibration
from cost_models.comm import GroupLink
from cost_models.comm import group_link
from cost_models.memory import StageParams
from cost_models.memory import stage_params
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

GEMM_DTYPES = (DType.bf16, DType.fp16, DType.fp8, DType.fp4)


@dataclass(frozen=True)
class Framework:
    """What the training software does that is not a tuning knob but changes the step time.

    The defaults are today's frameworks (Megatron-Core, NeMo, Megatron-Bridge, torchtitan,
    llm-foundry): FlashAttention-style fused attention, data-parallel collectives bucketed and
    overlapped with compute, tensor-parallel collectives overlapped with GEMMs. Megatron-LM
    before 2023 ran unfused attention and reduced gradients after the backward pass.

    DeepSpeed's ZeRO-3 of 2021 differs in how it moves parameters: it gathered them parameter
    by parameter from Python hooks through list all-gathers (a copy per rank), reaching about
    one link's bandwidth per GPU even inside an NVLink node (DeepSpeed issues #1174, #1069),
    so across nodes each GPU's share goes through its own NIC instead of NCCL's multi-rail
    rings (``fsdp_multi_rail``); and its per-submodule fetch/release hooks gather the weights
    once more for the recomputed forward before the backward gathers them again
    (``fsdp_regather_for_recompute``), where FSDP serves both from the backward gather. It
    also prefetched one module (one weight matrix) ahead rather than one layer
    (``fsdp_prefetch_per_module``): while a module computes, only the next module's weights
    arrive, so a small GEMM cannot hide the gather of the large one after it.
    """

    flash_attention: bool = True
    overlap_dp_comm: bool = True
    overlap_tp_comm: bool = True
    fsdp_multi_rail: bool = True
    fsdp_regather_for_recompute: bool = False
    fsdp_prefetch_per_module: bool = False


MODERN = Framework()


def dense_peak_flops(gpu: GPUSpec, dtype: DType) -> float:
    """Dense peak FLOP/s for ``dtype``; bf16 falls back to fp16 (V100 runs it at fp16 rate)."""
    if gpu.supports(dtype):
        return gpu.peak_flops(dtype)
    if dtype in (DType.bf16, DType.fp16):
        for other in (DType.fp16, DType.bf16):
            if gpu.supports(other):
                return gpu.peak_flops(other)
    raise ValueError(
        f"dtype={dtype} needs {dtype} tensor cores, which {gpu.name} does not have; "
        f"use one of: {', '.join(str(d) for d in gpu.peak_tflops_dense)}"
    )


@dataclass(frozen=True)
class TrainingPlan:
    """A validated configuration with the sizes every term needs."""

    model: ModelSpec
    cluster: ClusterSpec
    workload: TrainingWorkload
    config: TrainingConfig
    cal: Calibration
    framework: Framework
    dp: int
    m: int  # micro-batches per pipeline per step
    ep: int  # 1 for dense models
    s_local: int  # sequence length per CP rank

    @property
    def tp_sp(self) -> int:
        """Divisor of the h-wide activations: tp with sequence parallelism, else 1."""
        return self.config.tp if self.config.sequence_parallel else 1

    @property
    def mb_tokens(self) -> int:
        """Tokens of one micro-batch on one CP rank (the M of every layer GEMM)."""
        return self.config.micro_batch_size * self.s_local

    @property
    def layers_per_stage(self) -> float:
        return self.model.num_layers / self.config.pp

    @property
    def kv_heads_per_rank(self) -> int:
        """KV heads each TP rank holds: g/tp, or one replicated head when tp > g."""
        return math.ceil(self.model.num_kv_heads / self.config.tp)

    @cached_property
    def params(self) -> StageParams:
        """Weights per GPU of the most loaded stage (memory.stage_params), computed once."""
        return stage_params(self.model, self.config.tp, self.config.pp, self.ep)

    @property
    def bf16_peak_flops(self) -> float:
        return dense_peak_flops(self.cluster.gpu, DType.bf16)

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.cluster.gpu.memory_bandwidth_gb_per_s * 1e9 * self.cal.hbm_efficiency

    def link(self, size: int, stride: int) -> GroupLink:
        c = self.cal
        return group_link(
            self.cluster,
            size,
            stride,
            nvlink_efficiency=c.nvlink_efficiency,
            scaleout_efficiency=c.scaleout_efficiency,
            nvlink_latency_s=c.nvlink_latency_s,
            scaleout_latency_s=c.scaleout_latency_s,
        )


def check_parallel_sizes(model: ModelSpec, config: TrainingConfig, num_gpus: int) -> int:
    """Raise ValueError for sizes the model cannot express; return dp."""
    t, p, c = config.tp, config.pp, config.cp
    dp = config.dp(num_gpus)
    if dp == 0:
        raise ValueError(
            f"tp*pp*cp = {t}*{p}*{c} = {t * p * c} does not divide num_gpus={num_gpus}; "
            "pick tp, pp and cp whose product divides the GPU count"
        )
    if model.num_attention_heads % t:
        raise ValueError(f"tp={t} does not divide num_attention_heads={model.num_attention_heads}")
    # Megatron may count the embedding and the loss as one layer each when splitting stages
    if p * config.vpp > model.num_layers + 2:
        raise ValueError(
            f"pp*vpp = {p * config.vpp} exceeds num_layers={model.num_layers} (+2 for the "
            "embedding and loss stages); lower pp or vpp"
        )
    if config.vpp > 1 and p == 1:
        raise ValueError(f"vpp={config.vpp} needs pp > 1; set vpp=1")
    if config.ep > 1 and not model.is_moe:
        raise ValueError(f"ep={config.ep} applies only to MoE models; set ep=1")
    if model.is_moe and (model.num_experts % config.ep or (dp * c) % config.ep):
        raise ValueError(
            f"ep={config.ep} must divide num_experts={model.num_experts} and dp*cp={dp * c}"
        )
    return dp


def make_plan(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    cal: Calibration,
    framework: Framework = MODERN,
) -> TrainingPlan:
    """Validate ``config`` against the model, cluster and workload and derive its sizes."""
    dp = check_parallel_sizes(model, config, cluster.num_gpus)
    per_step = dp * config.micro_batch_size
    if workload.global_batch_size % per_step:
        raise ValueError(
            f"dp*micro_batch_size = {dp}*{config.micro_batch_size} = {per_step} does not "
            f"divide global_batch_size={workload.global_batch_size}"
        )
    if workload.seq_len < config.cp:
        raise ValueError(f"cp={config.cp} exceeds seq_len={workload.seq_len}")
    if config.dtype not in GEMM_DTYPES:
        raise ValueError(f"dtype={config.dtype} is not a training precision; use bf16, fp8 or fp4")
    dense_peak_flops(cluster.gpu, config.dtype)  # raises for a dtype the GPU lacks
    return TrainingPlan(
        model=model,
        cluster=cluster,
        workload=workload,
        config=config,
        cal=cal,
        framework=framework,
        dp=dp,
        m=workload.global_batch_size // per_step,
        ep=config.ep if model.is_moe else 1,
        s_local=workload.seq_len // config.cp,
    )
