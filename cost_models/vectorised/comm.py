"""Exposed communication per row, the array form of ``comm.py`` and ``training_comm.py``.

Where a group sits in the cluster (its link: bandwidths, latency, members per NVLink domain)
depends only on its size and stride, so ``links`` asks the scalar ``TrainingPlan.link`` once
per distinct (size, stride) and spreads the answer over the rows. The collective times are
the scalar formulas on arrays, in the same order of operations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from cost_models.comm import GroupLink
from cost_models.compute import ACT_BYTES
from cost_models.compute import MicrobatchCompute
from cost_models.memory import WEIGHT_BYTES
from cost_models.memory import grad_bytes
from cost_models.training_comm import DP_BUCKET_PARAMS
from cost_models.training_comm import OPTIMIZER_STEP_BYTES_PER_PARAM
from cost_models.training_comm import _fsdp_link
from cost_models.training_comm import _layer_weight_matrices
from cost_models.training_comm import fsdp_gathers_per_microbatch
from cost_models.vectorised.columns import DTYPES
from cost_models.vectorised.columns import RECOMPUTES
from cost_models.vectorised.columns import FloatArray
from cost_models.vectorised.columns import IntArray
from cost_models.vectorised.columns import code_of
from cost_models.vectorised.plan import FULL
from cost_models.vectorised.plan import BatchPlan
from search_spaces.config import TrainingConfig

NONE_SHARDING = code_of("sharding", "none")
ZERO3 = code_of("sharding", "zero3")


@dataclass(frozen=True)
class Links:
    """``GroupLink`` figures per row."""

    size: FloatArray
    ranks_per_domain: FloatArray
    ring_bw: FloatArray
    p2p_bw: FloatArray
    latency_s: FloatArray
    nvlink_bw: FloatArray
    scaleout_bw: FloatArray

    def all_reduce_s(self, size_bytes: Any) -> FloatArray:
        """The faster of ring and tree (``GroupLink.all_reduce_s``)."""
        n, bw, lat = self.size, self.ring_bw, self.latency_s
        ring = 2.0 * (n - 1) / n * size_bytes / bw + 2 * (n - 1) * lat
        tree = 2.0 * size_bytes / bw + 2 * np.ceil(np.log2(n)) * lat
        skip = (n <= 1) | (np.asarray(size_bytes) <= 0)
        return np.where(skip, 0.0, np.minimum(ring, tree))

    def all_gather_s(self, size_bytes: Any) -> FloatArray:
        n = self.size
        t = (n - 1) / n * size_bytes / self.ring_bw + (n - 1) * self.latency_s
        return np.where((n <= 1) | (np.asarray(size_bytes) <= 0), 0.0, t)

    def reduce_scatter_s(self, size_bytes: Any) -> FloatArray:
        return self.all_gather_s(size_bytes)

    def p2p_s(self, size_bytes: Any) -> FloatArray:
        t = size_bytes / self.p2p_bw + self.latency_s
        return np.where(np.asarray(size_bytes) <= 0, 0.0, t)

    def all_to_all_s(self, size_bytes: Any) -> FloatArray:
        n, k = self.size, self.ranks_per_domain
        intra = (k - 1) / n * size_bytes / self.nvlink_bw
        inter = (n - k) / n * size_bytes / self.scaleout_bw
        t = np.maximum(intra, inter) + (n - 1) * self.latency_s
        return np.where((n <= 1) | (np.asarray(size_bytes) <= 0), 0.0, t)


def links(
    plan: BatchPlan,
    size: IntArray,
    stride: IntArray,
    via: Callable[[GroupLink], GroupLink] | None = None,
) -> Links:
    """The link of a group of ``size`` ranks ``stride`` apart, per row (``via`` adjusts the
    scalar link, e.g. to the one ZeRO-3 collectives see)."""

    def one(n: int, s: int) -> tuple[float, ...]:
        link = plan.template.link(n, s)
        if via is not None:
            link = via(link)
        return (
            link.size,
            link.ranks_per_domain,
            link.ring_bw_bytes_per_s,
            link.p2p_bw_bytes_per_s,
            link.latency_s,
            link.nvlink_bw_bytes_per_s,
            link.scaleout_bw_bytes_per_s,
        )

    return Links(*plan.per_unique(one, size, stride, outputs=7))


def _count(plan: BatchPlan) -> IntArray:
    """Collectives per layer: 4, or 6 with full recompute (the forward runs twice)."""
    return np.where(plan.batch.recompute == FULL, 6, 4)


def tensor_parallel_s(plan: BatchPlan) -> FloatArray:
    b = plan.batch
    size = plan.mb_tokens * plan.model.hidden_size * ACT_BYTES
    link = links(plan, b.tp, np.ones_like(b.tp))
    total = _count(plan) * link.all_reduce_s(size) * plan.layers_per_stage
    exposed = plan.cal.tp_comm_exposed_fraction if plan.framework.overlap_tp_comm else 1.0
    return np.where(b.tp == 1, 0.0, total * exposed)


def _kv_elements_per_token(plan: BatchPlan) -> FloatArray:
    model = plan.model
    if model.attention == "mla":
        assert model.v_head_dim is not None
        width = model.q_dim + model.num_attention_heads * model.v_head_dim
        return np.asarray(width / plan.batch.tp, dtype=np.float64)
    return np.asarray(2.0 * plan.kv_heads_per_rank * model.head_dim, dtype=np.float64)


def context_parallel_s(plan: BatchPlan, mb: MicrobatchCompute) -> FloatArray:
    b = plan.batch
    chunk = plan.mb_tokens * _kv_elements_per_token(plan) * ACT_BYTES
    send = links(plan, b.cp, b.tp).p2p_s(chunk) * (b.cp - 1) * plan.layers_per_stage
    fwd = np.maximum(0.0, send - mb.attention.fwd_s)
    bwd = np.maximum(0.0, 2.0 * send - mb.attention.bwd_s)
    return np.where(b.cp == 1, 0.0, fwd + bwd)


def expert_parallel_s(plan: BatchPlan) -> FloatArray:
    b, model = plan.batch, plan.model
    if not model.is_moe:
        return np.zeros(len(b))
    tokens = plan.mb_tokens / plan.tp_sp
    size = tokens * model.experts_per_token * model.hidden_size * ACT_BYTES
    per_layer = _count(plan) * links(plan, plan.ep, b.tp).all_to_all_s(size)
    moe_layers = model.num_moe_layers / b.pp
    out = per_layer * moe_layers * plan.cal.ep_comm_exposed_fraction
    return np.where(plan.ep == 1, 0.0, out)


def pipeline_p2p_s(plan: BatchPlan) -> FloatArray:
    b = plan.batch
    size = plan.mb_tokens * plan.model.hidden_size * ACT_BYTES / b.tp
    link = links(plan, b.pp, b.tp * b.cp * plan.dp)
    out = 2 * b.vpp * link.p2p_s(size) * plan.cal.pp_p2p_exposed_fraction
    return np.where(b.pp == 1, 0.0, out)


def _groups(
    plan: BatchPlan, via: Callable[[GroupLink], GroupLink] | None = None
) -> list[tuple[Links, FloatArray, FloatArray]]:
    """``training_comm._groups`` per row: dense weights over dp*cp, experts over dp*cp/ep."""
    b, params = plan.batch, plan.params
    dense_dp = plan.dp * b.cp
    dense: Any = params.dense
    groups = [(links(plan, dense_dp, b.tp, via), dense, params.layer_dense)]
    if plan.model.is_moe:  # rows without expert weights add 0 s, as the scalar skip does
        expert: Any = params.expert
        link = links(plan, dense_dp // plan.ep, b.tp * plan.ep, via)
        groups.append((link, expert, expert / plan.layers_per_stage))
    return groups  # type: ignore[return-value]


def _grad_bytes(plan: BatchPlan) -> FloatArray:
    """``memory.grad_bytes`` per row (a table over the dtype codes)."""
    return np.array([grad_bytes(d) for d in DTYPES])[plan.batch.dtype]


def _fsdp_gathers(plan: BatchPlan) -> IntArray:
    """``fsdp_gathers_per_microbatch`` per row (a table over the recompute codes)."""
    table = [
        fsdp_gathers_per_microbatch(replace(plan.template, config=TrainingConfig(recompute=r)))
        for r in RECOMPUTES
    ]
    return np.array(table, dtype=np.int64)[plan.batch.recompute]


def _fsdp_comm_s(plan: BatchPlan) -> tuple[Any, Any]:
    """``training_comm.fsdp_comm_s`` per row."""
    comm: Any = 0.0
    first: Any = 0.0
    grad = _grad_bytes(plan)
    gathers = _fsdp_gathers(plan)
    layers = np.maximum(1.0, plan.layers_per_stage)
    for link, params, layer in _groups(plan, partial(_fsdp_link, plan.template)):
        gather = layers * link.all_gather_s(params * WEIGHT_BYTES / layers)
        comm += gathers * gather + layers * link.reduce_scatter_s(params * grad / layers)
        first += link.all_gather_s(layer * WEIGHT_BYTES)
    return comm, first


def _fsdp_s(plan: BatchPlan, mb: MicrobatchCompute) -> FloatArray:
    comm, first = _fsdp_comm_s(plan)
    if not plan.framework.overlap_dp_comm:
        return np.asarray(comm * plan.m, dtype=np.float64)
    rest = comm - first
    overlapped = np.maximum(mb.total_s, rest)
    if plan.framework.fsdp_prefetch_per_module:
        overlapped = _module_prefetch_s(mb.total_s, rest, _layer_weight_matrices(plan.template))
    exposed = np.maximum(plan.cal.fsdp_comm_exposed_fraction * rest, overlapped - mb.total_s)
    return np.asarray((first + exposed) * plan.m, dtype=np.float64)


def _module_prefetch_s(compute_s: Any, comm_s: Any, weights: list[float]) -> Any:
    """``training_comm.module_prefetch_s`` per row, summed in the scalar's order."""
    total = sum(weights)
    n = len(weights)
    acc: Any = 0
    for i in range(n):
        acc = acc + np.maximum(compute_s * weights[i], comm_s * weights[(i + 1) % n]) / total
    return acc


def _dp_sharded_s(plan: BatchPlan, mb: MicrobatchCompute) -> FloatArray:
    """``data_parallel_s`` for sharding none, zero1 and zero2."""
    none = plan.batch.sharding == NONE_SHARDING
    reduce: Any = 0.0
    gather: Any = 0.0
    total_params: Any = 0.0
    grad = _grad_bytes(plan)
    for link, params, _ in _groups(plan):
        total_params += params
        all_reduce = link.all_reduce_s(params * grad)
        scatter = link.reduce_scatter_s(params * grad)
        reduce += np.where(none, all_reduce, scatter)
        gather += np.where(none, 0.0, link.all_gather_s(params * WEIGHT_BYTES))
    if not plan.framework.overlap_dp_comm:
        return np.asarray(reduce + gather, dtype=np.float64)
    safe = np.where(total_params > 0, total_params, 1.0)
    bucket = np.where(total_params > 0, np.minimum(1.0, DP_BUCKET_PARAMS / safe), 1.0)
    exposed_reduce = np.maximum(bucket * reduce, reduce - mb.bwd_s)
    exposed_gather = np.maximum(bucket * gather, gather - mb.fwd_s)
    return np.asarray(exposed_reduce + exposed_gather, dtype=np.float64)


def data_parallel_s(plan: BatchPlan, mb: MicrobatchCompute) -> FloatArray:
    zero3 = plan.batch.sharding == ZERO3
    if zero3.all():
        return _fsdp_s(plan, mb)
    if not zero3.any():
        return _dp_sharded_s(plan, mb)
    return np.where(zero3, _fsdp_s(plan, mb), _dp_sharded_s(plan, mb))


def optimizer_s(plan: BatchPlan) -> FloatArray:
    b, params = plan.batch, plan.params
    dense_dp = plan.dp * b.cp
    none = b.sharding == NONE_SHARDING
    dense_shards = np.where(none, 1, dense_dp)
    expert_shards = np.where(none, 1, np.maximum(1, dense_dp // plan.ep))
    dense: Any = params.dense
    expert: Any = params.expert
    local = dense / dense_shards + expert / expert_shards
    return np.asarray(
        local * OPTIMIZER_STEP_BYTES_PER_PARAM / plan.template.hbm_bytes_per_s, dtype=np.float64
    )
