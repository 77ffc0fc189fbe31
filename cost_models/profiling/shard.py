"""The per-GPU shard of a training candidate: what one device builds and times.

A candidate's GPU holds the layers of one pipeline stage with the tensor-parallel dimensions
divided by tp (attention heads, KV heads, FFN width, vocabulary), the routed experts divided by
ep, and the sequence divided by cp. Collectives are not run (one device cannot); the evaluator
adds them from the analytical model and says so.

Choices made here, for a faithful yet cheap measurement:

- the profiled stage is the last one (layers + final norm + LM head + loss), the slowest in
  Megatron's schedules; with pp = 1 it also has the embedding;
- experts receive a balanced share of the routed tokens (``tokens * top_k * ep / E`` each);
- context parallelism: ring attention lets the ``s/cp`` local queries see ``s(cp+1)/(2cp)``
  keys on average, which the shard reproduces with repeated local keys (non-causal);
- models too large for the device are built with fewer layers (``max_layers`` or memory) and a
  0-layer run separates the per-layer time; if even one layer does not fit, the hidden size is
  capped and times are scaled by the FLOP ratio. Both are recorded as notes.
"""

from __future__ import annotations

import math
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.flops import forward_flops_per_token
from search_spaces.config import TrainingConfig
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

STATE_BYTES_PER_PARAM = 16.0  # fp32 weight + fp32 grad + two fp32 Adam moments
MIN_HIDDEN = 64
MIN_VOCAB = 256


class ShardSpec(BaseModel):
    """One device's slice of the model, every width already divided by its parallel size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int
    num_layers: int  # layers built (0 = embedding/head only, for the per-layer split)
    moe_layers: int  # how many of them are MoE layers (the last ones)
    heads: int
    kv_heads: int
    head_dim: int
    attention: Literal["mha", "mla"] = "mha"
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    attention_bias: bool = False
    ffn_hidden_size: int
    ffn_activation: Literal["gelu", "swiglu"] = "gelu"
    num_experts: int = 0  # router width (all experts)
    local_experts: int = 0
    experts_per_token: int = 0
    moe_ffn_hidden_size: int = 0
    shared_experts: int = 0
    ep: int = 1
    vocab_size: int
    with_embedding: bool
    micro_batch_size: int
    seq_len: int  # queries per sequence on this device
    kv_len: int  # keys each query sees (== seq_len unless cp > 1)
    causal: bool = True
    recompute: Literal["none", "selective", "full"] = "none"

    @property
    def tokens(self) -> int:
        return self.micro_batch_size * self.seq_len


class ShardPlan(BaseModel):
    """What to build, and how to scale its measurements back to the full stage."""

    model_config = ConfigDict(frozen=True)

    shard: ShardSpec
    stage_layers: int  # layers the real stage holds
    time_scale: float = 1.0  # FLOP ratio full/capped hidden size (1 = not capped)
    memory_scale: float = 1.0  # parameter ratio full/capped hidden size
    notes: list[str] = []

    @property
    def scaled_layers(self) -> bool:
        return self.shard.num_layers < self.stage_layers


def _moe_layers_in_stage(model: ModelSpec, stage_layers: int) -> int:
    """MoE layers among the last stage's layers, in the model's proportion."""
    if not model.is_moe:
        return 0
    return round(stage_layers * model.num_moe_layers / model.num_layers)


def full_shard(
    model: ModelSpec, workload: TrainingWorkload, config: TrainingConfig, layers: int
) -> ShardSpec:
    """The shard with ``layers`` layers at the model's own widths."""
    tp, cp = config.tp, config.cp
    stage_layers = math.ceil(model.num_layers / config.pp)
    moe = min(layers, math.ceil(_moe_layers_in_stage(model, stage_layers) * layers / stage_layers))
    s_local = max(1, workload.seq_len // cp)
    kv_len = s_local if cp == 1 else round(workload.seq_len * (cp + 1) / (2 * cp))
    ep = config.ep if model.is_moe else 1
    return ShardSpec(
        **tp_split_fields(model, tp),
        num_layers=layers,
        moe_layers=moe,
        local_experts=max(1, model.num_experts // ep) if model.is_moe else 0,
        moe_ffn_hidden_size=max(1, (model.moe_ffn_hidden_size or 0) // tp) if model.is_moe else 0,
        ep=ep,
        with_embedding=config.pp == 1,
        micro_batch_size=config.micro_batch_size,
        seq_len=s_local,
        kv_len=kv_len,
        causal=cp == 1,
        recompute=config.recompute,
    )


def tp_split_fields(model: ModelSpec, tp: int) -> dict[str, Any]:
    """The architecture fields of a shard that only tensor parallelism changes (heads, FFN
    width and vocabulary divided by ``tp``; the rest as in the model): shared by the training
    and the serving shard so the two build the same layers."""
    return {
        "hidden_size": model.hidden_size,
        "heads": max(1, model.num_attention_heads // tp),
        "kv_heads": max(1, model.num_kv_heads // tp),
        "head_dim": model.head_dim,
        "attention": model.attention,
        "q_lora_rank": model.q_lora_rank,
        "kv_lora_rank": model.kv_lora_rank,
        "qk_nope_head_dim": model.qk_nope_head_dim,
        "qk_rope_head_dim": model.qk_rope_head_dim,
        "v_head_dim": model.v_head_dim,
        "attention_bias": model.attention_bias,
        "ffn_hidden_size": max(1, model.ffn_hidden_size // tp),
        "ffn_activation": model.ffn_activation,
        "num_experts": model.num_experts,
        "experts_per_token": model.experts_per_token,
        "shared_experts": model.num_shared_experts,
        "vocab_size": max(1, model.vocab_size // tp),
    }


def shard_params(shard: ShardSpec) -> float:
    """Parameters of the shard (weights only, as built)."""
    h, layers = shard.hidden_size, shard.num_layers
    q = shard.heads * shard.head_dim
    kv = shard.kv_heads * shard.head_dim
    attn = h * (q + 2 * kv) + q * h + 2 * h
    k = 3 if shard.ffn_activation == "swiglu" else 2
    dense_mlp = k * h * shard.ffn_hidden_size
    expert = k * h * shard.moe_ffn_hidden_size
    moe_mlp = h * shard.num_experts + (shard.local_experts + shard.shared_experts) * expert
    dense_layers = layers - shard.moe_layers
    body = layers * attn + dense_layers * dense_mlp + shard.moe_layers * moe_mlp
    embed = shard.vocab_size * h * (2 if shard.with_embedding else 1)
    return float(body + embed + h)


def shard_activation_bytes(shard: ShardSpec) -> float:
    """A generous bound on the activations of one micro-batch (for planning only)."""
    t, h = shard.tokens, shard.hidden_size
    ffn = max(shard.ffn_hidden_size, shard.moe_ffn_hidden_size * max(1, shard.experts_per_token))
    per_layer = t * (24.0 * h + 12.0 * ffn)
    scores = 4.0 * shard.micro_batch_size * shard.heads * shard.seq_len * shard.kv_len
    logits = 16.0 * t * shard.vocab_size
    return max(1, shard.num_layers) * (per_layer + scores) + logits


def shard_bytes(shard: ShardSpec) -> float:
    """Bytes the profile needs: model state plus one micro-batch of activations."""
    return STATE_BYTES_PER_PARAM * shard_params(shard) + shard_activation_bytes(shard)


def _capped_model(model: ModelSpec, hidden: int) -> ModelSpec:
    """The model with every width scaled by hidden/hidden_size (heads, FFN, experts and the
    vocabulary, whose logits would otherwise dominate a capped shard's memory)."""
    r = hidden / model.hidden_size
    heads = max(1, round(model.num_attention_heads * r))
    kv_wanted = max(1, round(model.num_kv_heads * r))
    kv = max(d for d in range(1, heads + 1) if heads % d == 0 and d <= kv_wanted)
    update = {
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv,
        "ffn_hidden_size": max(1, round(model.ffn_hidden_size * r)),
        "vocab_size": max(MIN_VOCAB, round(model.vocab_size * r)),
    }
    if model.moe_ffn_hidden_size:
        update["moe_ffn_hidden_size"] = max(1, round(model.moe_ffn_hidden_size * r))
    data = model.model_dump()
    data.update(update)
    return ModelSpec.model_validate(data)


def plan_shard(
    model: ModelSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    *,
    max_layers: int,
    budget_bytes: float,
    max_hidden_size: int | None = None,
) -> ShardPlan:
    """The largest shard that fits ``budget_bytes`` (fewer layers first, then a capped
    hidden size) and how its measurements scale to the real stage."""
    stage_layers = math.ceil(model.num_layers / config.pp)
    layers = min(stage_layers, max_layers)
    notes: list[str] = []
    built = model
    hidden = model.hidden_size
    if max_hidden_size is not None and max_hidden_size < hidden:
        hidden = max_hidden_size
        built = _capped_model(model, hidden)
    while layers > 1 and shard_bytes(full_shard(built, workload, config, layers)) > budget_bytes:
        layers = max(1, layers // 2)
    while hidden > MIN_HIDDEN and (
        shard_bytes(full_shard(built, workload, config, layers)) > budget_bytes
    ):
        hidden = max(MIN_HIDDEN, hidden // 2)
        built = _capped_model(model, hidden)
    time_scale = memory_scale = 1.0
    if built is not model:
        full_flops = forward_flops_per_token(model, workload.seq_len).total
        time_scale = full_flops / forward_flops_per_token(built, workload.seq_len).total
        full = shard_params(full_shard(model, workload, config, layers))
        memory_scale = full / shard_params(full_shard(built, workload, config, layers))
        notes.append(
            f"profiled at hidden size {hidden} instead of {model.hidden_size} (device memory); "
            f"times scaled by the FLOP ratio {time_scale:.3g}, memory by the parameter ratio "
            f"{memory_scale:.3g}"
        )
    if layers < stage_layers:
        notes.append(
            f"profiled {layers} of the stage's {stage_layers} layers (plus a 0-layer run) and "
            "scaled the per-layer time and memory to the full stage"
        )
    return ShardPlan(
        shard=full_shard(built, workload, config, layers),
        stage_layers=stage_layers,
        time_scale=time_scale,
        memory_scale=memory_scale,
        notes=notes,
    )
