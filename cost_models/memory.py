"""Memory per GPU of a training configuration, by term, on the most loaded pipeline rank.

Model state (README formula 3; Megatron distributed-optimizer doc): bf16 weights (2 bytes per
parameter), fp32 main gradients (4) and Adam state (12: fp32 master copy and two moments), 18
bytes per parameter in all. Sharding over the ``d`` data-parallel replicas of a weight:

==========  =====================  ======================================
sharding    bytes per parameter    sharded terms
==========  =====================  ======================================
none        2 + 4 + 12 = 18        --
zero1       6 + 12/d               optimizer state (= distributed optimizer)
zero2       2 + (4 + 12)/d         + gradients
zero3       18/d                   + weights (FSDP)
==========  =====================  ======================================

Parameters are counted per model-parallel shard: the dense (non-expert) weights of a rank's
layers divided by tp, the routed experts by ep*tp (expert TP = tp), the embedding on the first
stage and the output layer on the last (both on the one stage when pp = 1). Dense weights are
replicated over ``dp*cp`` ranks, experts over ``dp*cp/ep``.

Activations: see ``activation_bytes_per_layer`` for the per-layer formula, then 1F1B keeps
``min(pp, m)`` micro-batches of ``L/pp`` layers in flight on the first stage (= L layers),
times ``1 + (pp-1)/(pp*vpp)`` with the interleaved schedule (Korthikanti et al. 2022 §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from cost_models.calibration import Calibration
from search_spaces.config import TrainingConfig
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec

GIB = float(1 << 30)
WEIGHT_BYTES = 2.0  # bf16 parameters
GRAD_BYTES = 4.0  # fp32 main gradients (Megatron accumulates and reduces in fp32)
OPTIMIZER_BYTES = 12.0  # fp32 master weights + Adam first and second moments
LOGIT_BYTES = 6.0  # bf16 logits + fp32 softmax kept for the cross-entropy backward
LOW_PRECISION = (DType.fp8, DType.fp4)  # GEMM inputs saved as 8-bit copies
ZERO3_LIVE_LAYERS = 2  # gathered full layers in flight with FSDP (current + prefetch)

MEMORY_TERMS = ("weights", "gradients", "optimizer_state", "activations", "working_margin")


def grad_bytes(dtype: DType) -> float:
    """Bytes per main gradient: fp16 training keeps (and reduces) fp16 gradients, bf16 and
    low-precision training accumulate and reduce them in fp32."""
    return 2.0 if dtype == DType.fp16 else GRAD_BYTES


def model_state_bytes_per_param(
    sharding: str, d: int, dtype: DType = DType.bf16
) -> dict[str, float]:
    """Bytes per parameter of weights, gradients and optimizer state (README formula 3).

    fp16 training (Megatron's fp16 path) holds fp16 gradients and an fp32 copy of them in the
    optimizer: 2 + 2 + 16 = 20 bytes, ``4 + 16/d`` distributed.
    """
    d = max(1, d)
    g = grad_bytes(dtype)
    w, o = WEIGHT_BYTES, OPTIMIZER_BYTES + (GRAD_BYTES if dtype == DType.fp16 else 0.0)
    if sharding == "zero1":
        return {"weights": w, "gradients": g, "optimizer_state": o / d}
    if sharding == "zero2":
        return {"weights": w, "gradients": g / d, "optimizer_state": o / d}
    if sharding == "zero3":
        return {"weights": w / d, "gradients": g / d, "optimizer_state": o / d}
    return {"weights": w, "gradients": g, "optimizer_state": o}


def _attention_split_bytes(model: ModelSpec, gemm_in: float) -> float:
    """Per-token bytes of the attention block that tp splits: Q, K, V (bf16, kept by the
    attention kernel) and its output O, the input of the output projection."""
    if model.attention != "mla":
        return 2.0 * model.q_dim + 4.0 * model.kv_dim + gemm_in * model.q_dim
    assert model.v_head_dim and model.kv_lora_rank and model.qk_rope_head_dim
    a, qk, v = model.num_attention_heads, model.q_dim // model.num_attention_heads, model.v_head_dim
    latents = (model.q_lora_rank or 0) + model.kv_lora_rank + model.qk_rope_head_dim
    return a * (4.0 * qk + 2.0 * v + gemm_in * v) + gemm_in * latents


def _ffn_bytes(model: ModelSpec, f: int, gemm_in: float) -> float:
    """One MLP's intermediates per token: fc1 outputs (f, or gate and up 2f) and fc2 input."""
    return 2.0 * (model.mlp_matrices - 1) * f + gemm_in * f


def _mlp_split_bytes(model: ModelSpec, moe: bool, gemm_in: float) -> float:
    """Per-token bytes of the MLP block that tp splits; an MoE layer keeps top-k routed
    copies of its input with their expert intermediates, the shared experts and fp32 router
    probabilities."""
    if not moe:
        return _ffn_bytes(model, model.ffn_hidden_size, gemm_in)
    assert model.moe_ffn_hidden_size is not None
    f = model.moe_ffn_hidden_size
    routed = model.experts_per_token * (gemm_in * model.hidden_size + _ffn_bytes(model, f, gemm_in))
    shared = model.num_shared_experts * _ffn_bytes(model, f, gemm_in)
    return routed + shared + 4.0 * model.num_experts


def activation_bytes_per_layer(
    model: ModelSpec,
    *,
    seq_len: int,
    micro_batch_size: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    recompute: str = "none",
    moe: bool = False,
    flash_attention: bool = True,
    dropout: bool = False,
    gemm_input_bytes: float = 2.0,
) -> float:
    """Bytes one layer keeps for the backward pass, per micro-batch, on one tp rank.

    Korthikanti et al. (2022, §4) re-derived for GQA, gated MLPs and MoE, 16-bit activations,
    per token (``seq_len`` is the per-CP-rank length):

    - replicated over tp unless sequence parallel: the inputs of the two norms (2h + 2h), of the
      QKV GEMM (2h) and of the MLP (2h), and with dropout two 1-byte masks (2h): 8h + 2h;
    - split by tp: Q (2q), K and V (2kv each), the attention output O (2q), the fc1 outputs and
      fc2 input (2*f*k_glu: 16h for a GeLU MLP with f = 4h), for MoE the top-k routed input
      copies and expert intermediates, the shared experts and the router;
    - without FlashAttention, the scores, softmax and dropout: 5*a*s bytes per token (/tp).

    Dropout is off by default: LLM pretraining recipes (Llama, MPT, Qwen, DeepSeek, current
    Megatron-Bridge) set it to 0; ``dropout=True`` is Megatron's old GPT default of 0.1.
    For a plain GPT layer (MHA, GeLU, f = 4h, dropout) this is Table 2's ``sbh(34 + 5as/h)``,
    ``sbh(10 + 24/t + 5as/(ht))`` with tp, and ``34/t`` with tp + sp + selective recompute.
    Selective recompute drops the scores; full recompute keeps only the layer input (2h, /tp
    with sequence parallel). ``gemm_input_bytes=1`` is fp8/fp4 training: Transformer Engine
    keeps the 8-bit copy of each GEMM input (QKV, O, fc1, fc2 inputs) for the weight gradient.
    """
    h = model.hidden_size
    tokens = float(seq_len * micro_batch_size)
    tp_sp = tp if sequence_parallel else 1
    if recompute == "full":
        return 2.0 * h * tokens / tp_sp
    g = gemm_input_bytes
    replicated = 4.0 * h + 2.0 * g * h + (2.0 * h if dropout else 0.0)
    split = _attention_split_bytes(model, g) + _mlp_split_bytes(model, moe, g)
    per_token = replicated / tp_sp + split / tp + 4.0 * replicated_kv_width(model, tp)
    if not flash_attention and recompute == "none":
        per_token += (5.0 if dropout else 2.0) * model.num_attention_heads * seq_len / tp
    return per_token * tokens


def inflight_layer_microbatches(num_layers: int, pp: int, vpp: int, num_microbatches: int) -> float:
    """Layer x micro-batch activation sets the first pipeline rank holds at its peak.

    1F1B warms up with ``pp`` micro-batches before the first backward, each through the rank's
    ``L/pp`` layers: ``L`` layers' worth (fewer when there are fewer than ``pp`` micro-batches).
    The interleaved schedule warms up deeper, by ``1 + (pp-1)/(pp*vpp)``.
    """
    if pp <= 1:
        return float(num_layers)
    held = min(pp, num_microbatches) * num_layers / pp
    return held * (1.0 + (pp - 1) / (pp * vpp)) if vpp > 1 else held


@dataclass(frozen=True)
class StageParams:
    """Parameters held by one GPU of the most loaded pipeline stage, by replication group."""

    dense: float  # replicated over dp*cp
    expert: float  # replicated over dp*cp/ep
    layer_dense: float  # one layer's dense weights on this rank (for FSDP gathering)


def replicated_kv_width(model: ModelSpec, tp: int) -> float:
    """K (or V) width a TP rank holds beyond its 1/tp share: when tp exceeds the KV heads,
    each rank keeps one whole KV head (``ceil(g/tp)`` heads instead of ``g/tp``)."""
    if model.attention == "mla":
        return 0.0
    heads = -(-model.num_kv_heads // tp)
    return (heads - model.num_kv_heads / tp) * model.head_dim


def stage_params(model: ModelSpec, tp: int, pp: int, ep: int) -> StageParams:
    """Weights per GPU on the first pipeline stage (which also holds the embedding), with the
    KV projections of heads replicated over tp counted on every rank that holds them."""
    moe_dense = 0.0
    expert = 0.0
    if model.is_moe:
        assert model.moe_ffn_hidden_size is not None
        experts = model.num_experts * model.expert_params()
        moe_dense = model.moe_mlp_params() - experts
        expert = model.num_moe_layers * experts / (ep * tp * pp)
    dense_layers = (
        model.num_layers * model.attention_params_per_layer()
        + model.num_dense_ffn_layers * model.dense_mlp_params()
        + model.num_moe_layers * moe_dense
    )
    embed = model.embedding_params() if pp == 1 else model.vocab_size * model.hidden_size
    kv_extra = 2.0 * model.hidden_size * replicated_kv_width(model, tp) * model.num_layers
    per_rank_layers = dense_layers / tp + kv_extra
    dense = per_rank_layers / pp + embed / tp
    return StageParams(dense=dense, expert=expert, layer_dense=per_rank_layers / model.num_layers)


@dataclass(frozen=True)
class MemoryEstimate:
    breakdown_gib: dict[str, float]
    total_gib: float
    binding_term: str


def _model_state_bytes(
    params: StageParams, config: TrainingConfig, dense_dp: int, expert_dp: int
) -> dict[str, float]:
    sharding = config.sharding
    dense = model_state_bytes_per_param(sharding, dense_dp, config.dtype)
    expert = model_state_bytes_per_param(sharding, expert_dp, config.dtype)
    out = {k: params.dense * dense[k] + params.expert * expert[k] for k in dense}
    if sharding == "zero3":
        out["weights"] += ZERO3_LIVE_LAYERS * params.layer_dense * WEIGHT_BYTES
    return out


def activation_bytes(
    model: ModelSpec,
    seq_len: int,
    config: TrainingConfig,
    num_microbatches: int,
    flash_attention: bool = True,
) -> float:
    """Peak activation bytes per GPU: in-flight layers on the first stage (+ logits if pp=1)."""
    s_local = max(1, seq_len // config.cp)
    layer = partial(
        activation_bytes_per_layer,
        model,
        seq_len=s_local,
        micro_batch_size=config.micro_batch_size,
        tp=config.tp,
        sequence_parallel=config.sequence_parallel,
        gemm_input_bytes=1.0 if config.dtype in LOW_PRECISION else 2.0,
        flash_attention=flash_attention,
    )
    per_layer = layer(recompute=config.recompute)
    if model.is_moe:
        moe = layer(recompute=config.recompute, moe=True)
        mixed = model.num_dense_ffn_layers * per_layer + model.num_moe_layers * moe
        per_layer = mixed / model.num_layers
    layers = inflight_layer_microbatches(model.num_layers, config.pp, config.vpp, num_microbatches)
    total = layers * per_layer
    if config.recompute == "full":  # one layer is re-materialised at a time during backward
        total += layer(recompute="none", moe=model.is_moe)
    if config.pp == 1:
        tokens = s_local * config.micro_batch_size
        total += LOGIT_BYTES * tokens * model.vocab_size / config.tp
    return total


def training_memory(
    model: ModelSpec,
    seq_len: int,
    config: TrainingConfig,
    dp: int,
    num_microbatches: int,
    calibration: Calibration,
    flash_attention: bool = True,
) -> MemoryEstimate:
    """Memory per GPU by term (GiB) and the largest term."""
    ep = config.ep if model.is_moe else 1
    params = stage_params(model, config.tp, config.pp, ep)
    dense_dp = dp * config.cp
    state = _model_state_bytes(params, config, dense_dp, max(1, dense_dp // ep))
    gib = {k: v / GIB for k, v in state.items()}
    acts = activation_bytes(model, seq_len, config, num_microbatches, flash_attention)
    gib["activations"] = acts / GIB
    subtotal = sum(gib.values())
    gib["working_margin"] = (
        calibration.working_margin_gib + calibration.fragmentation_fraction * subtotal
    )
    binding = max(gib, key=lambda k: gib[k])
    return MemoryEstimate(breakdown_gib=gib, total_gib=sum(gib.values()), binding_term=binding)
