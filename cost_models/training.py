"""Analytical step time, throughput and memory of one training configuration.

The step is modelled per GPU of an average pipeline stage, micro-batch by micro-batch:

``step = m * (compute + exposed TP + exposed CP + exposed EP + PP p2p) + bubble
+ exposed DP + optimizer``

- compute (``compute.py``): the kernels of one micro-batch on one GPU, op by op, with
  shape-aware GEMM efficiency, FlashAttention (or unfused) attention, memory-bound kernels,
  MoE grouped GEMMs and permutation, the LM head's share, and recompute.
- communication (``training_comm.py``): TP/CP/EP/PP per micro-batch, DP/FSDP per step, on
  the two-level NVLink/scale-out topology of ``comm.py``.
- bubble: ``(p-1)/(m*v)`` of the per-micro-batch chain (compute and the exposed TP/CP/EP/PP
  communication) for 1F1B (v = 1) and the interleaved schedule (v = vpp).

The constants come from ``calibration.yaml`` (one entry per GPU generation, fitted by
``python -m cost_models.accuracy.fit``); ``Framework`` says which kernels and overlaps the
training software uses.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.compute import MicrobatchCompute
from cost_models.compute import microbatch_compute
from cost_models.flops import TRAIN_PASSES
from cost_models.flops import forward_flops_per_token
from cost_models.flops import recompute_flops_per_token
from cost_models.memory import MemoryEstimate
from cost_models.memory import training_memory
from cost_models.plan import MODERN
from cost_models.plan import Framework
from cost_models.plan import TrainingPlan
from cost_models.plan import dense_peak_flops
from cost_models.plan import make_plan
from cost_models.training_comm import context_parallel_s
from cost_models.training_comm import data_parallel_s
from cost_models.training_comm import expert_parallel_s
from cost_models.training_comm import optimizer_s
from cost_models.training_comm import pipeline_p2p_s
from cost_models.training_comm import tensor_parallel_s
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

BREAKDOWN_TERMS = (
    "compute",
    "tensor_parallel",
    "pipeline_bubble",
    "pipeline_p2p",
    "data_parallel",
    "context_parallel",
    "expert_all_to_all",
    "optimizer",
)
COMPUTE_TERMS = (
    "gemm",
    "attention",
    "memory_bound",
    "lm_head_and_loss",
    "moe_overhead",
    "recompute",
)


class TrainingEstimate(BaseModel):
    """The analytical estimate of one training configuration (seconds, GiB, USD)."""

    model_config = ConfigDict(frozen=True)

    tokens_per_s: float
    tokens_per_s_per_gpu: float
    step_time_s: float
    mfu: float  # model FLOPs (no recompute) / (step time * GPUs * dense bf16 peak)
    hfu: float  # the same with the recompute FLOPs counted
    memory_per_gpu_gib: float
    memory_capacity_gib: float
    fits: bool
    cost_per_million_tokens_usd: float
    dp: int
    num_microbatches: int
    flops_per_step: float  # model FLOPs of one optimizer step over the whole cluster
    breakdown: dict[str, float]  # seconds per step per term, keys = BREAKDOWN_TERMS
    compute_breakdown: dict[str, float]  # the compute term by kernel kind, keys = COMPUTE_TERMS
    memory_breakdown_gib: dict[str, float]
    binding_memory_term: str

    def metrics(self) -> dict[str, float]:
        """The numeric objectives a tuning job can optimise or limit."""
        return {
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s": self.tokens_per_s,
            "step_time_s": self.step_time_s,
            "mfu": self.mfu,
            "memory_per_gpu_gib": self.memory_per_gpu_gib,
            "cost_per_million_tokens_usd": self.cost_per_million_tokens_usd,
        }


def _breakdown(plan: TrainingPlan, mb: MicrobatchCompute) -> dict[str, float]:
    """Seconds per step per term (see the module docstring)."""
    m, cfg = plan.m, plan.config
    chain = {
        "compute": mb.total_s,
        "tensor_parallel": tensor_parallel_s(plan),
        "context_parallel": context_parallel_s(plan, mb),
        "expert_all_to_all": expert_parallel_s(plan),
        "pipeline_p2p": pipeline_p2p_s(plan),
    }
    terms = {k: v * m for k, v in chain.items()}
    terms["pipeline_bubble"] = (cfg.pp - 1) / cfg.vpp * sum(chain.values())
    terms["data_parallel"] = data_parallel_s(plan, mb)
    terms["optimizer"] = optimizer_s(plan)
    return {k: terms[k] for k in BREAKDOWN_TERMS}


def estimate_training(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    calibration: Calibration | None = None,
    framework: Framework = MODERN,
) -> TrainingEstimate:
    """Step time, throughput, MFU, memory and cost of ``config`` (ValueError if invalid)."""
    cal = calibration or load_calibration(cluster.gpu.generation)
    plan = make_plan(model, cluster, workload, config, cal, framework)
    mb = microbatch_compute(plan)
    breakdown = _breakdown(plan, mb)
    memory = training_memory(
        model, workload.seq_len, config, plan.dp, plan.m, cal, framework.flash_attention
    )
    return _estimate(plan, mb, breakdown, memory)


def _estimate(
    plan: TrainingPlan,
    mb: MicrobatchCompute,
    breakdown: dict[str, float],
    memory: MemoryEstimate,
) -> TrainingEstimate:
    gpu, n = plan.cluster.gpu, plan.cluster.num_gpus
    step = sum(breakdown.values())
    tokens = plan.workload.global_batch_size * plan.workload.seq_len
    fwd = forward_flops_per_token(plan.model, plan.workload.seq_len)
    model_flops = TRAIN_PASSES * fwd.total * tokens
    hw_flops = model_flops + recompute_flops_per_token(fwd, plan.config.recompute).total * tokens
    peak = step * n * dense_peak_flops(gpu, DType.bf16)
    tokens_per_s = tokens / step
    return TrainingEstimate(
        tokens_per_s=tokens_per_s,
        tokens_per_s_per_gpu=tokens_per_s / n,
        step_time_s=step,
        mfu=model_flops / peak,
        hfu=hw_flops / peak,
        memory_per_gpu_gib=memory.total_gib,
        memory_capacity_gib=gpu.memory_gib,
        fits=memory.total_gib <= gpu.memory_gib,
        cost_per_million_tokens_usd=(
            n * plan.cluster.gpu_hour_price_usd / 3600 / tokens_per_s * 1e6
        ),
        dp=plan.dp,
        num_microbatches=plan.m,
        flops_per_step=model_flops,
        breakdown=breakdown,
        compute_breakdown={k: v * plan.m for k, v in mb.breakdown().items()},
        memory_breakdown_gib=memory.breakdown_gib,
        binding_memory_term=memory.binding_term,
    )
