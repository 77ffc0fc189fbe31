"""The analytical training model over a batch of configurations at once.

``estimate_training_batch`` returns, per configuration, what ``estimate_training`` returns
(step time, throughput, MFU, memory, cost and the breakdowns), computed with numpy over the
whole batch: the same formulas in the same order, so the figures match the scalar model to
rounding (the equality test in ``tests/cost_models/test_cm_vectorised.py`` guards it).
Rows ``make_plan`` rejects get NaN figures, ``valid = False`` and the scalar's message from
``error(i)``; ``estimate(i)`` rebuilds the ``TrainingEstimate`` of one row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.compute import MicrobatchCompute
from cost_models.flops import TRAIN_PASSES
from cost_models.flops import forward_flops_per_token
from cost_models.flops import recompute_flops_per_token
from cost_models.memory import MEMORY_TERMS
from cost_models.plan import MODERN
from cost_models.plan import Framework
from cost_models.plan import dense_peak_flops
from cost_models.training import BREAKDOWN_TERMS
from cost_models.training import COMPUTE_TERMS
from cost_models.training import TrainingEstimate
from cost_models.vectorised.columns import RECOMPUTES
from cost_models.vectorised.columns import BoolArray
from cost_models.vectorised.columns import FloatArray
from cost_models.vectorised.columns import IntArray
from cost_models.vectorised.columns import TrainingBatch
from cost_models.vectorised.comm import context_parallel_s
from cost_models.vectorised.comm import data_parallel_s
from cost_models.vectorised.comm import expert_parallel_s
from cost_models.vectorised.comm import optimizer_s
from cost_models.vectorised.comm import pipeline_p2p_s
from cost_models.vectorised.comm import tensor_parallel_s
from cost_models.vectorised.compute import microbatch_compute
from cost_models.vectorised.memory import BatchMemory
from cost_models.vectorised.memory import training_memory
from cost_models.vectorised.plan import BatchPlan
from cost_models.vectorised.plan import batch_plan
from cost_models.vectorised.plan import rejection
from search_spaces.config import TrainingConfig
from search_spaces.objectives import TRAINING_METRICS
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

# The per-row figures, in TrainingEstimate's field order (metrics() reads a subset).
FIGURES = (
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "step_time_s",
    "mfu",
    "hfu",
    "memory_per_gpu_gib",
    "cost_per_million_tokens_usd",
)


@dataclass(frozen=True)
class _Inputs:
    """What the batch was estimated against, to word the errors of rejected rows."""

    model: ModelSpec
    cluster: ClusterSpec
    workload: TrainingWorkload
    cal: Calibration
    framework: Framework


@dataclass(frozen=True)
class TrainingBatchEstimate:
    """Per-row arrays of ``TrainingEstimate``'s figures (NaN where ``valid`` is False)."""

    batch: TrainingBatch
    valid: BoolArray
    tokens_per_s: FloatArray
    tokens_per_s_per_gpu: FloatArray
    step_time_s: FloatArray
    mfu: FloatArray
    hfu: FloatArray
    memory_per_gpu_gib: FloatArray
    cost_per_million_tokens_usd: FloatArray
    fits: BoolArray
    memory_capacity_gib: float
    dp: IntArray  # 0 where invalid
    num_microbatches: IntArray  # 0 where invalid
    flops_per_step: float
    breakdown: dict[str, FloatArray]  # keys = BREAKDOWN_TERMS
    compute_breakdown: dict[str, FloatArray]  # keys = COMPUTE_TERMS
    memory_breakdown_gib: dict[str, FloatArray]  # keys = MEMORY_TERMS
    binding_memory_term: IntArray  # index into MEMORY_TERMS, -1 where invalid
    inputs: _Inputs

    def __len__(self) -> int:
        return len(self.valid)

    def metrics(self) -> dict[str, FloatArray]:
        """``TrainingEstimate.metrics()`` per row: the objectives a tuning job can use."""
        return {k: getattr(self, k) for k in TRAINING_METRICS}

    def error(self, i: int) -> str | None:
        """Why row ``i`` is invalid, in the scalar model's words (None when valid)."""
        if self.valid[i]:
            return None
        inp = self.inputs
        config = self.batch.config(i)
        return rejection(inp.model, inp.cluster, inp.workload, config, inp.cal, inp.framework)

    def binding_term(self, i: int) -> str:
        """The largest memory term of row ``i`` ("" when invalid)."""
        index = int(self.binding_memory_term[i])
        return MEMORY_TERMS[index] if index >= 0 else ""

    def estimate(self, i: int) -> TrainingEstimate:
        """Row ``i`` as the ``TrainingEstimate`` the scalar model returns (ValueError when
        the row is invalid, with the scalar model's message)."""
        if not self.valid[i]:
            raise ValueError(self.error(i))
        return TrainingEstimate(
            **{k: float(getattr(self, k)[i]) for k in FIGURES},
            memory_capacity_gib=self.memory_capacity_gib,
            fits=bool(self.fits[i]),
            dp=int(self.dp[i]),
            num_microbatches=int(self.num_microbatches[i]),
            flops_per_step=self.flops_per_step,
            breakdown={k: float(v[i]) for k, v in self.breakdown.items()},
            compute_breakdown={k: float(v[i]) for k, v in self.compute_breakdown.items()},
            memory_breakdown_gib={k: float(v[i]) for k, v in self.memory_breakdown_gib.items()},
            binding_memory_term=self.binding_term(i),
        )


def _breakdown(plan: BatchPlan, mb: MicrobatchCompute) -> dict[str, FloatArray]:
    """``training._breakdown`` per row."""
    m, b = plan.m, plan.batch
    chain: dict[str, Any] = {
        "compute": mb.total_s,
        "tensor_parallel": tensor_parallel_s(plan),
        "context_parallel": context_parallel_s(plan, mb),
        "expert_all_to_all": expert_parallel_s(plan),
        "pipeline_p2p": pipeline_p2p_s(plan),
    }
    terms = {k: v * m for k, v in chain.items()}
    chain_s: Any = 0
    for value in chain.values():
        chain_s = chain_s + value
    terms["pipeline_bubble"] = (b.pp - 1) / b.vpp * chain_s
    terms["data_parallel"] = data_parallel_s(plan, mb)
    terms["optimizer"] = optimizer_s(plan)
    return {k: terms[k] for k in BREAKDOWN_TERMS}


def _figures(
    plan: BatchPlan, breakdown: dict[str, FloatArray], memory: BatchMemory
) -> tuple[dict[str, FloatArray], float]:
    """``training._estimate``'s headline figures per row, and the model FLOPs per step."""
    cluster, workload, b = plan.template.cluster, plan.template.workload, plan.batch
    gpu, n = cluster.gpu, cluster.num_gpus
    step: Any = 0
    for value in breakdown.values():
        step = step + value
    tokens = workload.global_batch_size * workload.seq_len
    fwd = forward_flops_per_token(plan.model, workload.seq_len)
    model_flops = TRAIN_PASSES * fwd.total * tokens
    extra = np.array([recompute_flops_per_token(fwd, r).total * tokens for r in RECOMPUTES])
    hw_flops = model_flops + extra[b.recompute]
    peak = step * n * dense_peak_flops(gpu, DType.bf16)
    tokens_per_s = tokens / step
    figures = {
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_gpu": tokens_per_s / n,
        "step_time_s": step,
        "mfu": model_flops / peak,
        "hfu": hw_flops / peak,
        "memory_per_gpu_gib": memory.total_gib,
        "cost_per_million_tokens_usd": n * cluster.gpu_hour_price_usd / 3600 / tokens_per_s * 1e6,
    }
    return figures, model_flops


def _spread(values: npt.NDArray[Any], rows: BoolArray, fill: float = np.nan) -> FloatArray:
    """Valid-row values placed into a full-length array (``fill`` elsewhere)."""
    if rows.all():
        return np.asarray(values, dtype=np.float64)
    out = np.full(len(rows), fill)
    out[rows] = values
    return out


def estimate_training_batch(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    configs: TrainingBatch | Sequence[TrainingConfig],
    calibration: Calibration | None = None,
    framework: Framework = MODERN,
) -> TrainingBatchEstimate:
    """``estimate_training`` of every configuration in ``configs`` at once (see module doc)."""
    batch = configs if isinstance(configs, TrainingBatch) else TrainingBatch.from_configs(configs)
    cal = calibration or load_calibration(cluster.gpu.generation)
    inputs = _Inputs(model, cluster, workload, cal, framework)
    valid, plan = batch_plan(model, cluster, workload, batch, cal, framework)
    figures: dict[str, FloatArray]
    compute: dict[str, FloatArray]
    mem_terms: dict[str, FloatArray]
    if len(plan.batch):
        mb = microbatch_compute(plan)
        breakdown = _breakdown(plan, mb)
        memory = training_memory(plan)
        figures, flops = _figures(plan, breakdown, memory)
        compute = {k: np.asarray(v * plan.m, np.float64) for k, v in mb.breakdown().items()}
        mem_terms, binding = memory.breakdown_gib, memory.binding_term
        dp, m = plan.dp, plan.m
    else:
        empty: FloatArray = np.empty(0)
        figures = dict.fromkeys(FIGURES, empty)
        breakdown = dict.fromkeys(BREAKDOWN_TERMS, empty)
        compute = dict.fromkeys(COMPUTE_TERMS, empty)
        mem_terms = dict.fromkeys(MEMORY_TERMS, empty)
        binding = dp = m = np.empty(0, dtype=np.int64)
        fwd = forward_flops_per_token(model, workload.seq_len)
        flops = TRAIN_PASSES * fwd.total * (workload.global_batch_size * workload.seq_len)
    capacity = cluster.gpu.memory_gib
    fits = np.zeros(len(batch), dtype=np.bool_)
    fits[valid] = figures["memory_per_gpu_gib"] <= capacity
    return TrainingBatchEstimate(
        batch=batch,
        valid=valid,
        **{k: _spread(v, valid) for k, v in figures.items()},
        fits=fits,
        memory_capacity_gib=capacity,
        dp=_spread(dp, valid, 0).astype(np.int64),
        num_microbatches=_spread(m, valid, 0).astype(np.int64),
        flops_per_step=float(flops),
        breakdown={k: _spread(v, valid) for k, v in breakdown.items()},
        compute_breakdown={k: _spread(v, valid) for k, v in compute.items()},
        memory_breakdown_gib={k: _spread(v, valid) for k, v in mem_terms.items()},
        binding_memory_term=_spread(binding, valid, -1).astype(np.int64),
        inputs=inputs,
    )
