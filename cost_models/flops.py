"""FLOPs of training, split by the kind of kernel that executes them.

The count is Megatron-LM's ``num_floating_point_operations`` (README formula 1): per token,
``3 * 2 * [L*(h*(q+2kv) + q*h + k_glu*h*f_eff) + core_attn + h*V]``, with the attention core
halved for causal masking (Megatron since Mar 2025), MLA's own projections, and MoE layers using
``f_eff = top-k * f_moe + shared * f_moe`` plus the router. The split matters because the three
parts run at different speeds: the layer GEMMs run in the configured dtype (fp8/fp4 speed them
up), the attention core is FlashAttention in bf16, and the LM head stays in bf16 (Megatron's
output layer is not an fp8 GEMM).
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.specs import ModelSpec

# Forward + backward = 3 forward passes (the backward computes input and weight gradients).
TRAIN_PASSES = 3.0
# Causal masking: only the lower triangle of QK^T (and of the AV product) is computed.
CAUSAL_FRACTION = 0.5


@dataclass(frozen=True)
class ForwardFlops:
    """Forward FLOPs per token, by kernel kind (multiply by 3 for forward + backward)."""

    layer_gemm: float  # projections, MLP / experts, router of all layers
    attention_core: float  # QK^T and AV of all layers (causal-halved)
    lm_head: float  # the h x V output projection

    @property
    def total(self) -> float:
        return self.layer_gemm + self.attention_core + self.lm_head


def attention_projection_weights(model: ModelSpec) -> int:
    """Weights of one attention block's GEMMs (no norms or biases): 2 FLOPs each per token."""
    h = model.hidden_size
    if model.attention != "mla":
        return h * (model.q_dim + 2 * model.kv_dim) + model.q_dim * h
    assert model.kv_lora_rank and model.qk_rope_head_dim and model.qk_nope_head_dim
    assert model.v_head_dim
    a = model.num_attention_heads
    qk = model.qk_nope_head_dim + model.qk_rope_head_dim
    r = model.q_lora_rank
    q = h * r + r * a * qk if r else h * a * qk  # low-rank query path when q_lora_rank is set
    kv_down = h * (model.kv_lora_rank + model.qk_rope_head_dim)
    kv_up = model.kv_lora_rank * a * (model.qk_nope_head_dim + model.v_head_dim)
    return q + kv_down + kv_up + a * model.v_head_dim * h


def attention_core_width(model: ModelSpec) -> int:
    """Summed width of the QK^T and AV contractions of all heads (2*q for MHA/GQA)."""
    if model.attention != "mla":
        return 2 * model.num_attention_heads * model.head_dim
    assert model.qk_nope_head_dim and model.qk_rope_head_dim and model.v_head_dim
    qk = model.qk_nope_head_dim + model.qk_rope_head_dim
    return model.num_attention_heads * (qk + model.v_head_dim)


def moe_ffn_width(model: ModelSpec) -> int:
    """Effective FFN width a token passes through in an MoE layer: top-k plus shared experts."""
    assert model.moe_ffn_hidden_size is not None
    return (model.experts_per_token + model.num_shared_experts) * model.moe_ffn_hidden_size


def forward_flops_per_token(model: ModelSpec, seq_len: int, causal: bool = True) -> ForwardFlops:
    """Forward FLOPs per token of a ``seq_len`` sequence (model FLOPs, no recompute).

    ``causal=False`` counts the full s x s attention (Megatron before Mar 2025, NeMo 24.07).
    """
    h, k = model.hidden_size, model.mlp_matrices
    proj = 2.0 * attention_projection_weights(model) * model.num_layers
    mlp = 2.0 * k * h * model.ffn_hidden_size * model.num_dense_ffn_layers
    if model.is_moe:
        routed = k * h * moe_ffn_width(model) + h * model.num_experts  # experts + router
        mlp += 2.0 * routed * model.num_moe_layers
    causal_share = CAUSAL_FRACTION if causal else 1.0
    core = 2.0 * attention_core_width(model) * seq_len * causal_share * model.num_layers
    head = 2.0 * h * model.vocab_size
    return ForwardFlops(layer_gemm=proj + mlp, attention_core=core, lm_head=head)


def recompute_flops_per_token(fwd: ForwardFlops, recompute: str) -> ForwardFlops:
    """Extra FLOPs per token spent re-running forward work in the backward pass.

    selective: the attention core is recomputed (Korthikanti et al. 2022); full: every
    transformer layer's forward runs again (the LM head is outside the checkpointed layers).
    """
    if recompute == "full":
        return ForwardFlops(fwd.layer_gemm, fwd.attention_core, 0.0)
    if recompute == "selective":
        return ForwardFlops(0.0, fwd.attention_core, 0.0)
    return ForwardFlops(0.0, 0.0, 0.0)


def model_flops_per_token(model: ModelSpec, seq_len: int) -> float:
    """Training model FLOPs per token (forward + backward, no recompute): the MFU numerator."""
    return TRAIN_PASSES * forward_flops_per_token(model, seq_len).total
