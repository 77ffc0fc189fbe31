"""Kernel time of one micro-batch on one GPU of an average pipeline stage, op by op.

Every GPU of a stage runs the same kernels on its shard: the layer GEMMs at their local shapes
(M = the micro-batch's tokens on this context-parallel rank, N or K split by tensor
parallelism, KV heads replicated when tp exceeds their count), the attention core of its
heads, and the memory-bound kernels on its slice of the activations. Each kernel's time comes
from ``kernels.py`` (shape-aware GEMMs, FlashAttention or unfused attention), so small models,
skinny projections and short head dims run below the large-GEMM rate on their own.

- Layer GEMMs (QKV, output projection, MLP or routed experts, shared experts) run in the
  configured dtype; fp8/fp4 speed up only these, and add the casts of their inputs (forward)
  and output gradients (backward) as HBM traffic. The router and the LM head stay in bf16.
- MoE experts are grouped GEMMs at the per-expert token count ``ep * tokens * top-k / E``
  (the reference runs route force-balanced); tokens are permuted to expert order and back in
  both passes, and each MoE layer pays a fixed routing overhead per micro-batch.
- The LM head and the cross-entropy run on the last stage; the average stage carries 1/pp.
- Recompute re-runs forward work in the backward pass: the attention core (selective) or the
  whole layer forward (full).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cost_models.flops import attention_projection_weights
from cost_models.kernels import AttentionShape
from cost_models.kernels import GemmRate
from cost_models.kernels import causal_pairs_per_query
from cost_models.kernels import flash_attention_times_s
from cost_models.kernels import gemm_train_times_s
from cost_models.kernels import unfused_attention_times_s
from cost_models.plan import TrainingPlan
from cost_models.plan import dense_peak_flops
from search_spaces.specs import DType

ACT_BYTES = 2.0  # bf16 activations
# Quantising one GEMM operand element to fp8/fp4: read bf16 (2), write the row-wise and the
# column-wise (transposed, for the other backward GEMM) low-precision copies (1 + 1).
LOW_PRECISION_CAST_BYTES = 4.0
FORWARD_SHARE_OF_ELEMENTWISE = 1.0 / 3.0  # the backward of a pointwise op touches ~2x the data

Gemm = tuple[float, float, float, int]  # m, n, k, groups


@dataclass(frozen=True)
class PassTimes:
    """Seconds of forward and backward work."""

    fwd_s: float = 0.0
    bwd_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.fwd_s + self.bwd_s

    def __add__(self, other: PassTimes) -> PassTimes:
        return PassTimes(self.fwd_s + other.fwd_s, self.bwd_s + other.bwd_s)

    def scaled(self, factor: float) -> PassTimes:
        return PassTimes(self.fwd_s * factor, self.bwd_s * factor)


@dataclass(frozen=True)
class MicrobatchCompute:
    """Kernel seconds of one micro-batch on one GPU of an average stage, by kind."""

    gemm: PassTimes  # layer GEMMs (configured dtype) and the router
    attention: PassTimes  # attention core
    memory_bound: PassTimes  # norms, activation functions, residuals, casts, permutation
    head: PassTimes  # LM head and cross-entropy, this stage's share
    moe_overhead_s: float
    recompute_s: float  # forward work re-run during the backward

    @property
    def fwd_s(self) -> float:
        parts = (self.gemm, self.attention, self.memory_bound, self.head)
        return sum(p.fwd_s for p in parts) + self.moe_overhead_s / 3.0

    @property
    def bwd_s(self) -> float:
        parts = (self.gemm, self.attention, self.memory_bound, self.head)
        return sum(p.bwd_s for p in parts) + 2.0 * self.moe_overhead_s / 3.0 + self.recompute_s

    @property
    def total_s(self) -> float:
        return self.fwd_s + self.bwd_s

    def breakdown(self) -> dict[str, float]:
        """Seconds per kind (forward + backward), recompute on its own."""
        return {
            "gemm": self.gemm.total_s,
            "attention": self.attention.total_s,
            "memory_bound": self.memory_bound.total_s,
            "lm_head_and_loss": self.head.total_s,
            "moe_overhead": self.moe_overhead_s,
            "recompute": self.recompute_s,
        }


def gemm_rate(plan: TrainingPlan, dtype: DType) -> GemmRate:
    """The calibrated rate of ``dtype`` GEMMs on the plan's GPU (fp16 runs like bf16)."""
    cal, gpu = plan.cal, plan.cluster.gpu
    eff = {DType.fp8: cal.gemm_efficiency_fp8, DType.fp4: cal.gemm_efficiency_fp4}.get(
        dtype, cal.gemm_efficiency_bf16
    )
    return GemmRate(
        flops_per_s=dense_peak_flops(gpu, dtype) * eff,
        k_overhead=cal.gemm_tile_overhead_k,
        sm_count=gpu.sm_count,
        hbm_bytes_per_s=plan.hbm_bytes_per_s,
        in_bytes=dtype.bytes,
    )


def _attention_gemms(plan: TrainingPlan) -> list[Gemm]:
    """QKV and output projections at their local shapes (KV heads replicated past g)."""
    model, t, tokens, h = plan.model, plan.config.tp, plan.mb_tokens, plan.model.hidden_size
    if model.attention == "mla":  # down/up projections folded into one h-deep GEMM
        assert model.v_head_dim is not None
        out = model.num_attention_heads * model.v_head_dim
        width_in = (attention_projection_weights(model) - out * h) / h
        return [(tokens, width_in / t, h, 1), (tokens, h, out / t, 1)]
    qkv = model.q_dim / t + 2 * plan.kv_heads_per_rank * model.head_dim
    return [(tokens, qkv, h, 1), (tokens, h, model.q_dim / t, 1)]


def _mlp_gemms(plan: TrainingPlan, ffn: float, tokens: float, groups: int = 1) -> list[Gemm]:
    """fc1 (gate and up for gated MLPs) and fc2 of an MLP of width ``ffn``, split by tp."""
    model, t = plan.model, plan.config.tp
    up = (model.mlp_matrices - 1) * ffn / t
    return [(tokens, up, model.hidden_size, groups), (tokens, model.hidden_size, ffn / t, groups)]


def _moe_gemms(plan: TrainingPlan) -> list[Gemm]:
    """Routed experts as grouped GEMMs (E/ep local experts) and the shared experts."""
    model, tokens = plan.model, plan.mb_tokens
    assert model.moe_ffn_hidden_size is not None
    local = model.num_experts // plan.ep
    per_expert = plan.ep * tokens * model.experts_per_token / model.num_experts
    gemms = _mlp_gemms(plan, model.moe_ffn_hidden_size, per_expert, local)
    if model.num_shared_experts:
        shared = model.num_shared_experts * model.moe_ffn_hidden_size
        gemms += _mlp_gemms(plan, shared, tokens)
    return gemms


def _gemm_pass_times(gemms: Sequence[Gemm], rate: GemmRate) -> tuple[PassTimes, float]:
    """Forward/backward time of ``gemms`` and the low-precision cast traffic they need."""
    fwd = bwd = cast_elements = 0.0
    for m, n, k, groups in gemms:
        f, b = gemm_train_times_s(m, n, k, rate, groups)
        fwd, bwd = fwd + f, bwd + b
        cast_elements += m * groups * (k + n)  # inputs (forward) and output grads (backward)
    return PassTimes(fwd, bwd), cast_elements


def _layer_gemms(plan: TrainingPlan, moe: bool) -> tuple[PassTimes, float]:
    """One layer's GEMM time and its low-precision cast bytes."""
    dtype = plan.config.dtype
    low_precision = dtype in (DType.fp8, DType.fp4)
    ffn = _moe_gemms(plan) if moe else _mlp_gemms(plan, plan.model.ffn_hidden_size, plan.mb_tokens)
    times, casts = _gemm_pass_times(_attention_gemms(plan) + ffn, gemm_rate(plan, dtype))
    if moe:  # the router: a skinny h x E GEMM in bf16, HBM-bound
        router: list[Gemm] = [(plan.mb_tokens, plan.model.num_experts, plan.model.hidden_size, 1)]
        times += _gemm_pass_times(router, gemm_rate(plan, DType.bf16))[0]
    cast_bytes = LOW_PRECISION_CAST_BYTES * casts if low_precision else 0.0
    return times, cast_bytes


def attention_gemm_times(plan: TrainingPlan) -> PassTimes:
    """The attention projections' (QKV and output) share of ``MicrobatchCompute.gemm``: one
    micro-batch on one GPU of an average stage. Every layer, dense or MoE, has the same
    attention block, so the rest of ``gemm`` is the MLP, expert and router GEMMs."""
    times, _ = _gemm_pass_times(_attention_gemms(plan), gemm_rate(plan, plan.config.dtype))
    return times.scaled(plan.model.num_layers / plan.config.pp)


def _attention_core(plan: TrainingPlan) -> PassTimes:
    """FlashAttention (or unfused attention) of one layer's local heads."""
    model, cfg = plan.model, plan.config
    d_qk, d_v = model.head_dim, model.head_dim
    if model.attention == "mla":
        assert model.v_head_dim is not None
        d_qk, d_v = model.q_dim // model.num_attention_heads, model.v_head_dim
    heads = cfg.micro_batch_size * model.num_attention_heads / cfg.tp
    seq = plan.workload.seq_len
    if not plan.framework.flash_attention:
        shape = AttentionShape(heads, plan.s_local, seq, d_qk, d_v)
        rate = gemm_rate(plan, DType.bf16)
        fwd, bwd = unfused_attention_times_s(shape, rate, plan.cal.unfused_softmax_bytes_per_pair)
        return PassTimes(fwd, bwd)
    shape = AttentionShape(heads, plan.s_local, causal_pairs_per_query(seq), d_qk, d_v)
    cal = plan.cal
    fwd, bwd = flash_attention_times_s(
        shape,
        plan.bf16_peak_flops,
        cal.attention_efficiency,
        cal.attention_softmax_flops_per_pair,
        cal.attention_tile_overhead_keys,
    )
    return PassTimes(fwd, bwd)


def _elementwise(plan: TrainingPlan, ffn_width: float, extra_bytes: float) -> PassTimes:
    """Norms, activation function, residuals and dropout of one layer, plus ``extra_bytes``."""
    width = plan.model.hidden_size / plan.tp_sp + ffn_width / plan.config.tp
    per_token = plan.cal.elementwise_passes * ACT_BYTES * width
    total = (per_token * plan.mb_tokens + extra_bytes) / plan.hbm_bytes_per_s
    share = FORWARD_SHARE_OF_ELEMENTWISE
    return PassTimes(total * share, total * (1.0 - share))


def _permutation_bytes(plan: TrainingPlan) -> float:
    """Token permutation to expert order and back, forward and backward: each reads and
    writes the h-wide token once and its top-k copies once, per pass."""
    model = plan.model
    tokens = plan.mb_tokens / plan.tp_sp
    return 2.0 * 2.0 * ACT_BYTES * (model.experts_per_token + 1) * model.hidden_size * tokens


def _layer(plan: TrainingPlan, moe: bool) -> tuple[PassTimes, PassTimes, PassTimes]:
    """GEMM, attention-core and memory-bound time of one (dense or MoE) layer."""
    gemm, cast_bytes = _layer_gemms(plan, moe)
    model = plan.model
    if moe:
        assert model.moe_ffn_hidden_size is not None
        width = (model.experts_per_token + model.num_shared_experts) * model.moe_ffn_hidden_size
        extra = cast_bytes + _permutation_bytes(plan)
    else:
        width, extra = model.ffn_hidden_size, cast_bytes
    return gemm, _attention_core(plan), _elementwise(plan, width, extra)


def _head(plan: TrainingPlan) -> PassTimes:
    """LM head GEMM (bf16) and softmax cross-entropy over the local vocabulary slice."""
    model, t = plan.model, plan.config.tp
    head = (plan.mb_tokens, model.vocab_size / t, model.hidden_size, 1)
    gemm = _gemm_pass_times([head], gemm_rate(plan, DType.bf16))[0]
    loss = plan.mb_tokens * model.vocab_size / t * plan.cal.loss_bytes_per_logit
    loss_s = loss / plan.hbm_bytes_per_s
    return gemm + PassTimes(loss_s / 2.0, loss_s / 2.0)


def _moe_overhead_s(plan: TrainingPlan) -> float:
    """Fixed MoE work per micro-batch on one stage: per local expert and MoE layer, the host
    and bookkeeping work of dropless dispatch (token counts synchronised to the host, splits,
    grouped-GEMM set-up, small kernels) that does not shrink with the tokens."""
    model = plan.model
    local_experts = model.num_experts // plan.ep if model.is_moe else 0
    moe_layers = model.num_moe_layers / plan.config.pp
    return plan.cal.moe_expert_overhead_s * local_experts * moe_layers


def microbatch_compute(plan: TrainingPlan) -> MicrobatchCompute:
    """Kernel time of one micro-batch on one GPU of an average pipeline stage."""
    model, pp = plan.model, plan.config.pp
    gemm, attn, mem = PassTimes(), PassTimes(), PassTimes()
    for moe, count in ((False, model.num_dense_ffn_layers), (True, model.num_moe_layers)):
        if count:
            g, a, e = _layer(plan, moe)
            share = count / pp
            gemm, attn, mem = gemm + g.scaled(share), attn + a.scaled(share), mem + e.scaled(share)
    recompute = {
        "full": gemm.fwd_s + attn.fwd_s + mem.fwd_s,
        "selective": attn.fwd_s,
    }.get(plan.config.recompute, 0.0)
    return MicrobatchCompute(
        gemm=gemm,
        attention=attn,
        memory_bound=mem,
        head=_head(plan).scaled(1.0 / pp),
        moe_overhead_s=_moe_overhead_s(plan),
        recompute_s=recompute,
    )
