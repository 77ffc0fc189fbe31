"""Validity and derived sizes of a batch of configurations, the array form of ``plan.py``.

``batch_plan`` marks the rows ``make_plan`` would reject and derives, for the valid rows, the
same sizes ``TrainingPlan`` does (dp, micro-batches, per-rank sequence, per-GPU widths). The
reasons for a rejected row are left to the scalar ``make_plan`` (``rejection``), which words
them once for both paths. Model- and GPU-level figures (GEMM rates, HBM bandwidth, the links of
a group) come from a template ``TrainingPlan`` through the scalar code itself.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import cached_property

import numpy as np

from cost_models.calibration import Calibration
from cost_models.compute import gemm_rate
from cost_models.kernels import GemmRate
from cost_models.memory import StageParams
from cost_models.memory import stage_params
from cost_models.plan import GEMM_DTYPES
from cost_models.plan import Framework
from cost_models.plan import TrainingPlan
from cost_models.plan import dense_peak_flops
from cost_models.plan import make_plan
from cost_models.vectorised.columns import DTYPES
from cost_models.vectorised.columns import RECOMPUTES
from cost_models.vectorised.columns import BoolArray
from cost_models.vectorised.columns import CodeCache
from cost_models.vectorised.columns import FloatArray
from cost_models.vectorised.columns import IntArray
from cost_models.vectorised.columns import TrainingBatch
from cost_models.vectorised.columns import code_of
from cost_models.vectorised.columns import per_unique
from cost_models.vectorised.columns import unique_rows
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

FULL = code_of("recompute", "full")
SELECTIVE = code_of("recompute", "selective")
NO_RECOMPUTE = code_of("recompute", "none")
assert len(RECOMPUTES) == 3


def template_plan(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    cal: Calibration,
    framework: Framework,
) -> TrainingPlan:
    """A plan whose knob-independent parts (GPU, calibration, topology) are the batch's;
    only those parts are read from it."""
    return TrainingPlan(
        model=model,
        cluster=cluster,
        workload=workload,
        config=TrainingConfig(),
        cal=cal,
        framework=framework,
        dp=1,
        m=1,
        ep=1,
        s_local=workload.seq_len,
    )


def _dtype_ok(cluster: ClusterSpec, dtype: DType) -> bool:
    """True when ``make_plan`` accepts ``dtype`` on this GPU."""
    if dtype not in GEMM_DTYPES:
        return False
    try:
        dense_peak_flops(cluster.gpu, dtype)
    except ValueError:
        return False
    return True


def valid_rows(
    model: ModelSpec, cluster: ClusterSpec, workload: TrainingWorkload, batch: TrainingBatch
) -> BoolArray:
    """The rows ``make_plan`` accepts (``check_parallel_sizes`` and ``make_plan``'s checks)."""
    n_gpus = cluster.num_gpus
    tp, pp, cp, ep, vpp, mbs = (
        batch.tp,
        batch.pp,
        batch.cp,
        batch.ep,
        batch.vpp,
        batch.micro_batch_size,
    )
    mp = tp * pp * cp
    ok = (n_gpus % mp) == 0
    dp = np.where(ok, n_gpus // mp, 0)
    ok &= (model.num_attention_heads % tp) == 0
    ok &= pp * vpp <= model.num_layers + 2
    ok &= (vpp == 1) | (pp > 1)
    if model.is_moe:
        ok &= ((model.num_experts % ep) == 0) & (((dp * cp) % ep) == 0)
    else:
        ok &= ep == 1
    per_step = np.maximum(dp * mbs, 1)
    ok &= (dp > 0) & ((workload.global_batch_size % per_step) == 0)
    ok &= cp <= workload.seq_len
    dtype_ok = np.array([_dtype_ok(cluster, d) for d in DTYPES])
    ok &= dtype_ok[batch.dtype]
    return ok


@dataclass(frozen=True)
class BatchPlan:
    """The array form of ``TrainingPlan`` for valid rows only."""

    template: TrainingPlan
    batch: TrainingBatch
    dp: IntArray
    m: IntArray  # micro-batches per pipeline per step
    ep: IntArray  # 1 for dense models
    s_local: IntArray
    codes: CodeCache = field(default_factory=dict, compare=False, repr=False)

    def per_unique(
        self, fn: Callable[..., Sequence[float]], *keys: IntArray, outputs: int
    ) -> list[FloatArray]:
        """``columns.per_unique`` remembering the renumbering of this plan's knob columns."""
        return per_unique(fn, *keys, outputs=outputs, cache=self.codes)

    def unique_rows(self, *keys: IntArray) -> tuple[IntArray, IntArray]:
        return unique_rows(*keys, cache=self.codes)

    @property
    def model(self) -> ModelSpec:
        return self.template.model

    @property
    def cal(self) -> Calibration:
        return self.template.cal

    @property
    def framework(self) -> Framework:
        return self.template.framework

    @cached_property
    def tp_sp(self) -> IntArray:
        return np.where(self.batch.sequence_parallel, self.batch.tp, 1)

    @cached_property
    def mb_tokens(self) -> IntArray:
        return self.batch.micro_batch_size * self.s_local

    @cached_property
    def layers_per_stage(self) -> FloatArray:
        return self.model.num_layers / self.batch.pp

    @cached_property
    def kv_heads_per_rank(self) -> IntArray:
        return -(-self.model.num_kv_heads // self.batch.tp)

    @cached_property
    def params(self) -> StageParams:
        """``stage_params`` per row (one scalar call per distinct tp, pp, ep)."""
        b = self.batch

        def one(tp: int, pp: int, ep: int) -> tuple[float, float, float]:
            p = stage_params(self.model, tp, pp, ep)
            return p.dense, p.expert, p.layer_dense

        dense, expert, layer = self.per_unique(one, b.tp, b.pp, self.ep, outputs=3)
        return StageParams(dense=dense, expert=expert, layer_dense=layer)  # type: ignore[arg-type]

    @cached_property
    def dtype_is_low_precision(self) -> BoolArray:
        low = np.array([d in (DType.fp8, DType.fp4) for d in DTYPES])
        return low[self.batch.dtype]

    def take(self, rows: IntArray) -> BatchPlan:
        """The plan of the configurations at ``rows``."""
        return BatchPlan(
            template=self.template,
            batch=self.batch.take(rows),
            dp=self.dp[rows],
            m=self.m[rows],
            ep=self.ep[rows],
            s_local=self.s_local[rows],
        )

    def rates(self) -> dict[int, GemmRate]:
        """The scalar ``gemm_rate`` of each dtype code present in the batch."""
        return {int(c): gemm_rate(self.template, DTYPES[c]) for c in np.unique(self.batch.dtype)}


def batch_plan(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    batch: TrainingBatch,
    cal: Calibration,
    framework: Framework,
) -> tuple[BoolArray, BatchPlan]:
    """The valid-row mask of ``batch`` and the plan of those rows."""
    ok = valid_rows(model, cluster, workload, batch)
    rows = batch if ok.all() else batch.take(ok)
    dp = cluster.num_gpus // (rows.tp * rows.pp * rows.cp)
    plan = BatchPlan(
        template=template_plan(model, cluster, workload, cal, framework),
        batch=rows,
        dp=dp,
        m=workload.global_batch_size // (dp * rows.micro_batch_size),
        ep=rows.ep if model.is_moe else np.ones_like(rows.ep),
        s_local=workload.seq_len // rows.cp,
    )
    return ok, plan


def rejection(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    cal: Calibration,
    framework: Framework,
) -> str | None:
    """Why ``make_plan`` rejects ``config`` (its own message), or None when it accepts it."""
    try:
        make_plan(model, cluster, workload, config, cal, framework)
    except ValueError as exc:
        return str(exc)
    return None
