"""Kernel time of one micro-batch per row, the array form of ``compute.py``.

The scalar ``PassTimes`` and ``MicrobatchCompute`` hold arrays here: their arithmetic (sums,
scaling, the forward/backward split of the MoE overhead and recompute) is the scalar code's
own, so it cannot drift from it. What is rewritten is only what branches per configuration:
the GEMM shapes (tp, ep, micro-batch tokens) and the per-row dtype of the layer GEMMs.
"""

from __future__ import annotations

from typing import Any
from typing import cast

import numpy as np

from cost_models.compute import ACT_BYTES
from cost_models.compute import FORWARD_SHARE_OF_ELEMENTWISE
from cost_models.compute import LOW_PRECISION_CAST_BYTES
from cost_models.compute import MicrobatchCompute
from cost_models.compute import PassTimes
from cost_models.compute import gemm_rate
from cost_models.flops import attention_projection_weights
from cost_models.kernels import AttentionShape
from cost_models.kernels import GemmRate
from cost_models.kernels import causal_pairs_per_query
from cost_models.kernels import flash_attention_times_s
from cost_models.vectorised.columns import FloatArray
from cost_models.vectorised.columns import IntArray
from cost_models.vectorised.kernels import gemm_train_times_s
from cost_models.vectorised.kernels import unfused_attention_times_s
from cost_models.vectorised.plan import FULL
from cost_models.vectorised.plan import SELECTIVE
from cost_models.vectorised.plan import BatchPlan
from search_spaces.specs import DType

DEDUPLICATE_FROM_ROWS = 256  # below this, finding the distinct rows costs more than it saves
# (m, n, k, groups) of one GEMM, each a per-row array or a number
Gemm = tuple[Any, Any, Any, Any]


def held(values: Any) -> float:
    """Per-row ``values`` passed where the scalar code takes a float: its arithmetic there is
    elementwise, so the scalar dataclasses and formulas run unchanged on arrays."""
    return cast(float, values)


def rows(value: float) -> FloatArray:
    """A field of a scalar dataclass that holds per-row values here, typed as such."""
    return cast(FloatArray, value)


def passes(fwd: Any, bwd: Any) -> PassTimes:
    """A ``PassTimes`` of per-row arrays."""
    return PassTimes(held(fwd), held(bwd))


class _Rate:
    """The GEMM rate of each row's dtype: per-row peak and input bytes, the GPU's rest."""

    def __init__(self, plan: BatchPlan) -> None:
        codes = plan.batch.dtype
        rates = plan.rates()
        flops = np.zeros(max(rates) + 1)
        width = np.zeros(max(rates) + 1)
        for code, rate in rates.items():
            flops[code], width[code] = rate.flops_per_s, rate.in_bytes
        self.flops_per_s = flops[codes]
        self.in_bytes = width[codes]
        self.gpu = next(iter(rates.values()))


def _gemm_pass_times(
    gemms: list[Gemm], flops: Any, width: Any, rate: GemmRate
) -> tuple[PassTimes, FloatArray | float]:
    """``compute._gemm_pass_times`` per row."""
    fwd: Any = 0.0
    bwd: Any = 0.0
    cast_elements: Any = 0.0
    for m, n, k, groups in gemms:
        f, b = gemm_train_times_s(m, n, k, flops, width, rate, groups)
        fwd, bwd = fwd + f, bwd + b
        cast_elements += m * groups * (k + n)
    return passes(fwd, bwd), cast_elements


def _attention_gemms(plan: BatchPlan) -> list[Gemm]:
    model, t, tokens, h = plan.model, plan.batch.tp, plan.mb_tokens, plan.model.hidden_size
    if model.attention == "mla":
        assert model.v_head_dim is not None
        out = model.num_attention_heads * model.v_head_dim
        width_in = (attention_projection_weights(model) - out * h) / h
        return [(tokens, width_in / t, h, 1), (tokens, h, out / t, 1)]
    qkv = model.q_dim / t + 2 * plan.kv_heads_per_rank * model.head_dim
    return [(tokens, qkv, h, 1), (tokens, h, model.q_dim / t, 1)]


def _mlp_gemms(plan: BatchPlan, ffn: int, tokens: Any, groups: Any = 1) -> list[Gemm]:
    model, t = plan.model, plan.batch.tp
    up = (model.mlp_matrices - 1) * ffn / t
    return [(tokens, up, model.hidden_size, groups), (tokens, model.hidden_size, ffn / t, groups)]


def _moe_gemms(plan: BatchPlan) -> list[Gemm]:
    model, tokens = plan.model, plan.mb_tokens
    assert model.moe_ffn_hidden_size is not None
    local = model.num_experts // plan.ep
    per_expert = plan.ep * tokens * model.experts_per_token / model.num_experts
    gemms = _mlp_gemms(plan, model.moe_ffn_hidden_size, per_expert, local)
    if model.num_shared_experts:
        shared = model.num_shared_experts * model.moe_ffn_hidden_size
        gemms += _mlp_gemms(plan, shared, tokens)
    return gemms


def _layer_gemms(plan: BatchPlan, rate: _Rate, moe: bool) -> tuple[PassTimes, Any]:
    model = plan.model
    ffn = _moe_gemms(plan) if moe else _mlp_gemms(plan, model.ffn_hidden_size, plan.mb_tokens)
    gemms = _attention_gemms(plan) + ffn
    times, casts = _gemm_pass_times(gemms, rate.flops_per_s, rate.in_bytes, rate.gpu)
    if moe:
        bf16 = gemm_rate(plan.template, DType.bf16)
        router: list[Gemm] = [(plan.mb_tokens, model.num_experts, model.hidden_size, 1)]
        times += _gemm_pass_times(router, bf16.flops_per_s, bf16.in_bytes, bf16)[0]
    cast_bytes = np.where(plan.dtype_is_low_precision, LOW_PRECISION_CAST_BYTES * casts, 0.0)
    return times, cast_bytes


def _attention_core(plan: BatchPlan) -> PassTimes:
    model, b = plan.model, plan.batch
    d_qk, d_v = model.head_dim, model.head_dim
    if model.attention == "mla":
        assert model.v_head_dim is not None
        d_qk, d_v = model.q_dim // model.num_attention_heads, model.v_head_dim
    heads = b.micro_batch_size * model.num_attention_heads / b.tp
    seq = plan.template.workload.seq_len
    if not plan.framework.flash_attention:
        rate = gemm_rate(plan.template, DType.bf16)
        softmax = plan.cal.unfused_softmax_bytes_per_pair
        s_local = plan.s_local.astype(np.float64)
        return passes(*unfused_attention_times_s(heads, s_local, d_qk, d_v, rate, softmax))
    shape = AttentionShape(held(heads), held(plan.s_local), causal_pairs_per_query(seq), d_qk, d_v)
    cal = plan.cal
    fwd, bwd = flash_attention_times_s(
        shape,
        plan.template.bf16_peak_flops,
        cal.attention_efficiency,
        cal.attention_softmax_flops_per_pair,
        cal.attention_tile_overhead_keys,
    )
    return passes(fwd, bwd)


def _elementwise(plan: BatchPlan, ffn_width: int, extra_bytes: Any) -> PassTimes:
    width = plan.model.hidden_size / plan.tp_sp + ffn_width / plan.batch.tp
    per_token = plan.cal.elementwise_passes * ACT_BYTES * width
    total = (per_token * plan.mb_tokens + extra_bytes) / plan.template.hbm_bytes_per_s
    share = FORWARD_SHARE_OF_ELEMENTWISE
    return passes(total * share, total * (1.0 - share))


def _permutation_bytes(plan: BatchPlan) -> FloatArray:
    model = plan.model
    tokens = plan.mb_tokens / plan.tp_sp
    return 2.0 * 2.0 * ACT_BYTES * (model.experts_per_token + 1) * model.hidden_size * tokens


def _layer(plan: BatchPlan, rate: _Rate, moe: bool) -> tuple[PassTimes, PassTimes, PassTimes]:
    gemm, cast_bytes = _layer_gemms(plan, rate, moe)
    model = plan.model
    if moe:
        assert model.moe_ffn_hidden_size is not None
        width = (model.experts_per_token + model.num_shared_experts) * model.moe_ffn_hidden_size
        extra = cast_bytes + _permutation_bytes(plan)
    else:
        width, extra = model.ffn_hidden_size, cast_bytes
    return gemm, _attention_core(plan), _elementwise(plan, width, extra)


def _head(plan: BatchPlan) -> PassTimes:
    model, t = plan.model, plan.batch.tp
    bf16 = gemm_rate(plan.template, DType.bf16)
    head: Gemm = (plan.mb_tokens, model.vocab_size / t, model.hidden_size, 1)
    gemm = _gemm_pass_times([head], bf16.flops_per_s, bf16.in_bytes, bf16)[0]
    loss = plan.mb_tokens * model.vocab_size / t * plan.cal.loss_bytes_per_logit
    loss_s = loss / plan.template.hbm_bytes_per_s
    return gemm + passes(loss_s / 2.0, loss_s / 2.0)


def _moe_overhead_s(plan: BatchPlan) -> FloatArray:
    model = plan.model
    local_experts = model.num_experts // plan.ep if model.is_moe else np.zeros_like(plan.ep)
    moe_layers = model.num_moe_layers / plan.batch.pp
    return plan.cal.moe_expert_overhead_s * local_experts * moe_layers


def microbatch_compute(plan: BatchPlan) -> MicrobatchCompute:
    """``compute.microbatch_compute`` per row: a ``MicrobatchCompute`` of arrays.

    The kernels of a micro-batch do not depend on the sharding or the virtual stages, which
    multiply a space's size several times over: the distinct rows of the knobs they do read
    are computed once each and spread back (fewer rows, same numpy code)."""
    b = plan.batch
    sp = b.sequence_parallel.astype(np.int64)
    keys = (b.tp, b.pp, b.cp, plan.ep, b.micro_batch_size, sp, b.recompute, b.dtype)
    if len(b) < DEDUPLICATE_FROM_ROWS:
        return _microbatch_compute(plan)
    rows, inverse = plan.unique_rows(*keys)
    if len(rows) * 2 > len(b):
        return _microbatch_compute(plan)
    return _spread(_microbatch_compute(plan.take(rows)), inverse)


def _spread(mb: MicrobatchCompute, inverse: IntArray) -> MicrobatchCompute:
    """The per-row ``MicrobatchCompute`` of distinct rows, spread to every row."""

    def each(p: PassTimes) -> PassTimes:
        return passes(rows(p.fwd_s)[inverse], rows(p.bwd_s)[inverse])

    return MicrobatchCompute(
        gemm=each(mb.gemm),
        attention=each(mb.attention),
        memory_bound=each(mb.memory_bound),
        head=each(mb.head),
        moe_overhead_s=held(rows(mb.moe_overhead_s)[inverse]),
        recompute_s=held(rows(mb.recompute_s)[inverse]),
    )


def _microbatch_compute(plan: BatchPlan) -> MicrobatchCompute:
    model, pp = plan.model, plan.batch.pp
    rate = _Rate(plan)
    zero = np.zeros(len(pp))
    gemm, attn, mem = passes(zero, zero), passes(zero, zero), passes(zero, zero)
    for moe, count in ((False, model.num_dense_ffn_layers), (True, model.num_moe_layers)):
        if count:
            g, a, e = _layer(plan, rate, moe)
            share = held(count / pp)
            gemm, attn, mem = gemm + g.scaled(share), attn + a.scaled(share), mem + e.scaled(share)
    recompute = plan.batch.recompute
    full = rows(gemm.fwd_s) + rows(attn.fwd_s) + rows(mem.fwd_s)
    recompute_s = np.where(
        recompute == FULL, full, np.where(recompute == SELECTIVE, attn.fwd_s, 0.0)
    )
    return MicrobatchCompute(
        gemm=gemm,
        attention=attn,
        memory_bound=mem,
        head=_head(plan).scaled(held(1.0 / pp)),
        moe_overhead_s=held(_moe_overhead_s(plan)),
        recompute_s=held(recompute_s),
    )
