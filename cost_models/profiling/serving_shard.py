"""The per-GPU shard of a serving worker: what one device builds to time prefill and decode.

A worker of shape (tp, pp, ep, attention_dp) puts on each GPU the layers of one pipeline stage,
its share of the attention heads (KV heads replicated when tp exceeds them), of the FFN width
and of the vocabulary (divided by tp), and its share of the routed experts: the experts are
spread over the ``tp * attention_dp`` GPUs of a stage, ``ep`` of them holding different
experts and the rest splitting each expert's width (as in ``search_spaces.inference_config``).
The tokens of all ``attention_dp`` ranks meet at the experts, so each local expert receives a
balanced ``tokens * attention_dp * top_k / E`` of them (``ShardSpec.ep`` carries that factor).

The profiled stage is the last one (layers + final norm + LM head, the slowest), with the
embedding when pp = 1. In a full pipeline each of the pp micro-batches of ``b / pp`` requests
passes every stage, so a decode step costs ``pp`` times the slowest stage's time at ``b / pp``
requests; a prompt passes the stages one after the other, ``pp`` times a stage's prefill.

What does not fit the device (or the CPU's patience) is built smaller and scaled back, and each
reduction becomes a note: fewer layers (plus a 0-layer run that separates embedding and head
from the per-layer time), a smaller decode batch (a second batch size gives the affine
per-request cost), and a shorter context (two prompt lengths fit the linear + quadratic prefill
cost, and decode steps at several context lengths fit the linear growth of attention).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.inference_terms import WorkerShape
from cost_models.profiling.runner import ProfilingError
from cost_models.profiling.shard import ShardSpec
from cost_models.profiling.shard import shard_params
from cost_models.profiling.shard import tp_split_fields
from search_spaces.specs import ModelSpec

Role = Literal["both", "prefill", "decode"]
CPU_MAX_CONTEXT_LEN = 2048  # default cap of cached tokens per request on a CPU
MIN_CONTEXT_LEN = 16


class ServingShard(BaseModel):
    """One device's slice of a serving worker, at the sizes to build and run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shard: ShardSpec  # widths, layers, experts; micro_batch_size = decode batch built
    shared_ffn_hidden_size: int = 0  # shared experts are split over tp only
    input_len: int  # prompt tokens built
    cache_len: int  # KV slots per request (prompt + the decode steps timed)
    chunk_tokens: int  # prefill chunk (the framework's chunked prefill)
    role: Role
    sliding_window: int = 0  # attention window of the sliding-window layers (0 = none)
    sliding_layers: int = 0  # how many of the built layers use it (the first ones)

    @property
    def batch(self) -> int:
        return self.shard.micro_batch_size

    @property
    def layers(self) -> int:
        return self.shard.num_layers

    def kv_width(self) -> int:
        """Cached elements per token and layer: K and V of the local KV heads, or MLA's
        latent and rope key (which every tensor-parallel rank keeps whole)."""
        s = self.shard
        if s.attention == "mla":
            assert s.kv_lora_rank and s.qk_rope_head_dim
            return s.kv_lora_rank + s.qk_rope_head_dim
        return 2 * s.kv_heads * s.head_dim


class ServingPlan(BaseModel):
    """What to build for one pool, and what to scale its measurements back to."""

    model_config = ConfigDict(frozen=True)

    shard: ServingShard
    pp: int
    stage_layers: int  # layers the real stage holds
    target_batch: int  # requests per micro-batch on the real stage (ceil(b_rank / pp))
    input_len: int  # the workload's
    output_len: int
    notes: list[str] = []

    @property
    def scaled_layers(self) -> bool:
        return self.shard.layers < self.stage_layers

    @property
    def scaled_batch(self) -> bool:
        return self.shard.batch < self.target_batch

    @property
    def scaled_context(self) -> bool:
        return self.shard.input_len < self.input_len


def _moe_layers_in_stage(model: ModelSpec, stage_layers: int, layers: int) -> int:
    if not model.is_moe:
        return 0
    in_stage = round(stage_layers * model.num_moe_layers / model.num_layers)
    return min(layers, math.ceil(in_stage * layers / stage_layers))


def sliding_layers(model: ModelSpec, layers: int) -> int:
    """Sliding-window layers among ``layers`` layers, in the model's proportion."""
    if not model.sliding_window:
        return 0
    return round(layers * min(model.sliding_window_layers, model.num_layers) / model.num_layers)


def stage_attended(model: ModelSpec, stage_layers: int, tokens: float) -> float:
    """Layer-tokens of cache a request with ``tokens`` cached tokens holds on the stage:
    every token in full-attention layers, at most the window in sliding-window layers."""
    sliding = sliding_layers(model, stage_layers)
    window = min(tokens, model.sliding_window) if sliding else tokens
    return (stage_layers - sliding) * tokens + sliding * window


def serving_shard_spec(
    model: ModelSpec, shape: WorkerShape, layers: int, batch: int, cache_len: int, input_len: int
) -> ShardSpec:
    """The shard's widths at ``layers`` layers (``seq_len`` = prompt, ``kv_len`` = cache)."""
    tp, stage_gpus = shape.tp, shape.tp * shape.attention_dp
    stage_layers = math.ceil(model.num_layers / shape.pp)
    moe = model.is_moe
    ep = shape.ep if moe else 1
    if moe and stage_gpus % ep:
        raise ValueError(
            f"ep={shape.ep} must divide tp*attention_dp={stage_gpus} (the GPUs of a stage)"
        )
    return ShardSpec(
        **tp_split_fields(model, tp),
        num_layers=layers,
        moe_layers=_moe_layers_in_stage(model, stage_layers, layers),
        local_experts=max(1, model.num_experts // ep) if moe else 0,
        moe_ffn_hidden_size=max(1, (model.moe_ffn_hidden_size or 0) * ep // stage_gpus)
        if moe
        else 0,
        ep=shape.attention_dp,  # ranks whose tokens meet at the local experts
        with_embedding=shape.pp == 1,
        micro_batch_size=batch,
        seq_len=input_len,
        kv_len=cache_len,
        causal=True,
    )


def serving_bytes(s: ServingShard, weight_bytes: float, kv_bytes: float) -> float:
    """Bytes the profile needs: weights, the KV cache, one layer's prefill chunk workspace
    (inference keeps no activations between layers) and the decode logits."""
    sh = s.shard
    weights = shard_params(sh) * weight_bytes
    kv = float(max(1, sh.num_layers)) * s.batch * s.cache_len * s.kv_width() * kv_bytes
    chunk = min(s.chunk_tokens, s.input_len)
    ffn = max(sh.ffn_hidden_size, sh.moe_ffn_hidden_size * max(1, sh.experts_per_token))
    prefill = chunk * (24.0 * sh.hidden_size + 12.0 * ffn) * weight_bytes
    scores = 4.0 * sh.heads * chunk * s.cache_len  # when attention materialises its scores
    decode = s.batch * (24.0 * sh.hidden_size + 12.0 * ffn + 4.0 * sh.vocab_size)
    return weights + kv + prefill + scores + decode


def plan_serving(
    model: ModelSpec,
    shape: WorkerShape,
    *,
    role: Role,
    batch_per_rank: float,
    input_len: int,
    output_len: int,
    decode_steps: int,
    max_layers: int,
    max_context_len: int | None,
    chunk_tokens: int,
    budget_bytes: float,
    weight_bytes: float,
    kv_bytes: float,
) -> ServingPlan:
    """The largest shard that fits ``budget_bytes`` and the caps (layers, then the decode
    batch, then the context), and the notes that say how it is scaled back.

    ``decode_steps`` are the steps timed per context point: the cache holds at least the
    prompt plus that many, so short outputs are still timed over several steps."""
    stage_layers = math.ceil(model.num_layers / shape.pp)
    layers = min(stage_layers, max_layers)
    target_batch = 1 if role == "prefill" else max(1, math.ceil(batch_per_rank / shape.pp))
    batch = target_batch
    isl, osl = input_len, output_len if role != "prefill" else 0
    cap = max_context_len
    notes: list[str] = []

    def build() -> ServingShard:
        b_isl, b_osl = isl, osl
        if cap is not None and isl + osl > cap:
            b_isl = max(MIN_CONTEXT_LEN // 2, round(isl * cap / (isl + osl)))
            b_osl = max(0, cap - b_isl) if osl else 0
        cache = b_isl if role == "prefill" else b_isl + max(b_osl, decode_steps + 1)
        spec = serving_shard_spec(model, shape, layers, batch, cache, b_isl)
        shared = (
            max(1, (model.moe_ffn_hidden_size or 0) // shape.tp) if model.num_shared_experts else 0
        )
        return ServingShard(
            shard=spec,
            shared_ffn_hidden_size=shared,
            input_len=b_isl,
            cache_len=cache,
            chunk_tokens=chunk_tokens,
            role=role,
            sliding_window=model.sliding_window if model.sliding_window else 0,
            sliding_layers=sliding_layers(model, layers),
        )

    def fits() -> bool:
        return serving_bytes(build(), weight_bytes, kv_bytes) <= budget_bytes

    while layers > 1 and not fits():
        layers = max(1, layers // 2)
    while batch > 1 and not fits():
        batch = max(1, batch // 2)
    while not fits():
        current = cap if cap is not None else isl + osl
        if current <= MIN_CONTEXT_LEN:
            raise ProfilingError(
                "oom",
                f"even one layer at batch 1 and {current} tokens of context needs "
                f"{serving_bytes(build(), weight_bytes, kv_bytes) / 2**20:.1f} MiB, more than "
                f"the {budget_bytes / 2**20:.1f} MiB this device can spare; profile on a "
                "larger device or use the analytical evaluator",
            )
        cap = max(MIN_CONTEXT_LEN, current // 2)
    shard = build()
    if layers < stage_layers:
        notes.append(
            f"profiled {layers} of the stage's {stage_layers} layers (plus a 0-layer run) and "
            "scaled the per-layer time and memory to the full stage"
        )
    if batch < target_batch:
        notes.append(
            f"decoded at batch {batch} (and {max(1, batch // 2)}) instead of {target_batch} "
            "(device memory); the step time is extrapolated as affine in the batch and the KV "
            "cache scaled to the full batch"
        )
    if shard.input_len < isl:
        notes.append(
            f"context capped at {shard.input_len} prompt + {shard.cache_len - shard.input_len} "
            f"decode tokens instead of {isl} + {osl} (max_context_len {cap}); prefill scaled "
            "by a linear + quadratic fit of two prompt lengths, decode by a linear fit over "
            "the context, and the KV cache to the full length"
        )
    return ServingPlan(
        shard=shard,
        pp=shape.pp,
        stage_layers=stage_layers,
        target_batch=target_batch,
        input_len=input_len,
        output_len=output_len,
        notes=notes,
    )
