"""Memory per GPU per row, the array form of ``memory.training_memory``.

The bytes per parameter (on sharding, replicas, dtype) and the in-flight micro-batches (on pp,
vpp, micro-batches) depend on a few discrete knobs with few distinct values in a batch: they
are the scalar functions themselves, called once per distinct combination (``per_unique``).
The activation bytes of a layer have as many distinct values as there are combinations of
six knobs, so they are the scalar formula on arrays, in the same order of operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cost_models.memory import GIB
from cost_models.memory import LOGIT_BYTES
from cost_models.memory import LOW_PRECISION
from cost_models.memory import MEMORY_TERMS
from cost_models.memory import WEIGHT_BYTES
from cost_models.memory import ZERO3_LIVE_LAYERS
from cost_models.memory import _attention_split_bytes
from cost_models.memory import _mlp_split_bytes
from cost_models.memory import inflight_layer_microbatches
from cost_models.memory import model_state_bytes_per_param
from cost_models.memory import replicated_kv_width
from cost_models.vectorised.columns import DTYPES
from cost_models.vectorised.columns import SHARDINGS
from cost_models.vectorised.columns import FloatArray
from cost_models.vectorised.columns import IntArray
from cost_models.vectorised.comm import ZERO3
from cost_models.vectorised.plan import FULL
from cost_models.vectorised.plan import NO_RECOMPUTE
from cost_models.vectorised.plan import BatchPlan

STATE_TERMS = ("weights", "gradients", "optimizer_state")
assert MEMORY_TERMS[:3] == STATE_TERMS


@dataclass(frozen=True)
class BatchMemory:
    """GiB per term (keys = MEMORY_TERMS), the total, and the largest term's index."""

    breakdown_gib: dict[str, FloatArray]
    total_gib: FloatArray
    binding_term: IntArray  # index into MEMORY_TERMS


def _state_bytes(plan: BatchPlan) -> dict[str, Any]:
    """``memory._model_state_bytes`` per row."""
    b, params = plan.batch, plan.params
    dense_dp = plan.dp * b.cp
    expert_dp = np.maximum(1, dense_dp // plan.ep)

    def per_param(sharding: int, d: int, dtype: int) -> list[float]:
        out = model_state_bytes_per_param(SHARDINGS[sharding], d, DTYPES[dtype])
        return [out[k] for k in STATE_TERMS]

    dense = plan.per_unique(per_param, b.sharding, dense_dp, b.dtype, outputs=3)
    expert = plan.per_unique(per_param, b.sharding, expert_dp, b.dtype, outputs=3)
    p_dense: Any = params.dense
    p_expert: Any = params.expert
    out = {k: p_dense * dense[i] + p_expert * expert[i] for i, k in enumerate(STATE_TERMS)}
    layer: Any = params.layer_dense
    live = ZERO3_LIVE_LAYERS * layer * WEIGHT_BYTES
    out["weights"] = np.where(b.sharding == ZERO3, out["weights"] + live, out["weights"])
    return out


def _per_layer(plan: BatchPlan, recompute: IntArray, moe: bool) -> FloatArray:
    """``activation_bytes_per_layer`` per row (no dropout, as ``activation_bytes`` calls it).

    The per-token widths that depend on the model only (the attention and MLP
    intermediates split by tp, the KV heads replicated past tp) come from the scalar helpers,
    once per GEMM-input width or tp value."""
    model, b = plan.model, plan.batch
    h = model.hidden_size
    s_local = np.maximum(1, plan.template.workload.seq_len // b.cp)
    tokens = (s_local * b.micro_batch_size).astype(np.float64)
    tp_sp = plan.tp_sp
    low = np.array([d in LOW_PRECISION for d in DTYPES])[b.dtype]
    g = np.where(low, 1.0, 2.0)
    replicated = 4.0 * h + 2.0 * g * h + 0.0
    split_of = {
        w: _attention_split_bytes(model, w) + _mlp_split_bytes(model, moe, w) for w in (1.0, 2.0)
    }
    split = np.where(low, split_of[1.0], split_of[2.0])

    def kv_width(tp: int) -> list[float]:
        return [4.0 * replicated_kv_width(model, tp)]

    kv = plan.per_unique(kv_width, b.tp, outputs=1)[0]
    per_token = replicated / tp_sp + split / b.tp + kv
    if not plan.framework.flash_attention:
        scores = 2.0 * model.num_attention_heads * s_local / b.tp
        per_token = np.where(recompute == NO_RECOMPUTE, per_token + scores, per_token)
    full = 2.0 * h * tokens / tp_sp
    return np.where(recompute == FULL, full, per_token * tokens)


def activation_bytes(plan: BatchPlan) -> FloatArray:
    """``memory.activation_bytes`` per row."""
    model, b = plan.model, plan.batch
    per_layer = _per_layer(plan, b.recompute, moe=False)
    if model.is_moe:
        moe = _per_layer(plan, b.recompute, moe=True)
        mixed = model.num_dense_ffn_layers * per_layer + model.num_moe_layers * moe
        per_layer = mixed / model.num_layers

    def inflight(pp: int, vpp: int, m: int) -> list[float]:
        return [inflight_layer_microbatches(model.num_layers, pp, vpp, m)]

    layers = plan.per_unique(inflight, b.pp, b.vpp, plan.m, outputs=1)[0]
    total = layers * per_layer
    full = b.recompute == FULL
    if full.any():
        none = np.full(len(b), NO_RECOMPUTE)
        total = np.where(full, total + _per_layer(plan, none, moe=model.is_moe), total)
    s_local = np.maximum(1, plan.template.workload.seq_len // b.cp)
    tokens = s_local * b.micro_batch_size
    logits = LOGIT_BYTES * tokens * model.vocab_size / b.tp
    return np.where(b.pp == 1, total + logits, total)


def training_memory(plan: BatchPlan) -> BatchMemory:
    """``memory.training_memory`` per row."""
    gib = {k: v / GIB for k, v in _state_bytes(plan).items()}
    gib["activations"] = activation_bytes(plan) / GIB
    subtotal: Any = 0
    for value in gib.values():
        subtotal = subtotal + value
    cal = plan.cal
    gib["working_margin"] = cal.working_margin_gib + cal.fragmentation_fraction * subtotal
    total: Any = 0
    for value in gib.values():
        total = total + value
    ordered = {k: gib[k] for k in MEMORY_TERMS}
    binding = np.argmax(np.stack(list(ordered.values())), axis=0)
    return BatchMemory(breakdown_gib=ordered, total_gib=total, binding_term=binding)
