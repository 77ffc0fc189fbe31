"""A real PyTorch serving shard with a KV cache (imports torch: load lazily).

Plain eager modules, as in ``torch_model``: pre-norm blocks, GQA/MHA or MLA attention through
``scaled_dot_product_attention``, GeLU or SwiGLU MLPs and balanced MoE. What differs from the
training shard is the cache: every layer owns preallocated tensors (``batch x kv_heads x
cache_len x head_dim`` for K and V, or MLA's ``batch x cache_len x (latent + rope)``) in the
KV-cache dtype; a prefill chunk writes its keys and values at its offset and attends to the
cached prefix (causally), and a decode step writes one position per request and attends to the
whole cached context (its last ``sliding_window`` positions in a sliding-window layer). Only the
last position's logits are computed, as a server does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from cost_models.profiling.serving_shard import ServingShard
from cost_models.profiling.shard import ShardSpec
from cost_models.profiling.torch_model import MLP


@dataclass
class LayerCache:
    """One layer's cache: K and V (MHA/GQA) or the compressed latent (MLA)."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    latent: torch.Tensor | None = None

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.k, self.v, self.latent) if t is not None]


def allocate_cache(s: ServingShard, device: torch.device, dtype: torch.dtype) -> list[LayerCache]:
    """Zeroed cache tensors for every layer (zeros: the memory is touched, as a server's
    preallocated pool is, and positions never written hold no NaNs)."""
    sh, out = s.shard, []
    for _ in range(sh.num_layers):
        if sh.attention == "mla":
            shape = (s.batch, s.cache_len, s.kv_width())
            out.append(LayerCache(latent=torch.zeros(shape, dtype=dtype, device=device)))
        else:
            shape4 = (s.batch, sh.kv_heads, s.cache_len, sh.head_dim)
            out.append(
                LayerCache(
                    k=torch.zeros(shape4, dtype=dtype, device=device),
                    v=torch.zeros(shape4, dtype=dtype, device=device),
                )
            )
    return out


def _mask(t: int, start: int, lo: int, window: int, device: torch.device) -> torch.Tensor:
    """Which keys ``lo..start+t`` each of ``t`` queries at positions ``start..`` sees:
    causal, and within the last ``window`` positions when a window is set."""
    keys = torch.arange(lo, start + t, device=device).unsqueeze(0)
    queries = torch.arange(start, start + t, device=device).unsqueeze(1)
    allowed = keys <= queries
    return allowed & (keys > queries - window) if window else allowed


class CachedAttention(nn.Module):
    """Self-attention of the local heads that writes to and reads from a layer's cache
    (reading only the last ``window`` positions in a sliding-window layer)."""

    def __init__(self, s: ShardSpec, window: int = 0) -> None:
        super().__init__()
        self.s = s
        self.window = window
        h, bias = s.hidden_size, s.attention_bias
        if s.attention == "mla":
            assert s.kv_lora_rank and s.qk_nope_head_dim and s.qk_rope_head_dim and s.v_head_dim
            d_qk = s.qk_nope_head_dim + s.qk_rope_head_dim
            q_in = s.q_lora_rank or h
            self.q_down = nn.Linear(h, s.q_lora_rank, bias=False) if s.q_lora_rank else None
            self.q_up = nn.Linear(q_in, s.heads * d_qk, bias=False)
            self.kv_down = nn.Linear(h, s.kv_lora_rank + s.qk_rope_head_dim, bias=False)
            self.kv_up = nn.Linear(
                s.kv_lora_rank, s.heads * (s.qk_nope_head_dim + s.v_head_dim), bias=False
            )
            self.out = nn.Linear(s.heads * s.v_head_dim, h, bias=bias)
        else:
            self.qkv = nn.Linear(h, (s.heads + 2 * s.kv_heads) * s.head_dim, bias=bias)
            self.out = nn.Linear(s.heads * s.head_dim, h, bias=bias)

    def _mha(
        self, x: torch.Tensor, cache: LayerCache, rows: slice, start: int, lo: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        s = self.s
        q, k, v = self.qkv(x).split(
            [s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], dim=-1
        )
        assert cache.k is not None and cache.v is not None
        end = start + t
        cache.k[rows, :, start:end] = k.view(b, t, s.kv_heads, -1).transpose(1, 2)
        cache.v[rows, :, start:end] = v.view(b, t, s.kv_heads, -1).transpose(1, 2)
        keys = cache.k[rows, :, lo:end].to(x.dtype)  # an fp8 cache is read in the compute dtype
        values = cache.v[rows, :, lo:end].to(x.dtype)
        return q.view(b, t, s.heads, -1).transpose(1, 2), keys, values

    def _mla(
        self, x: torch.Tensor, cache: LayerCache, rows: slice, start: int, lo: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MLA caches the latent and the rope key; keys and values are expanded from the
        cached latent at every step (the plain, non-absorbed form)."""
        b, t, _ = x.shape
        s = self.s
        assert s.kv_lora_rank and s.qk_nope_head_dim and s.qk_rope_head_dim and s.v_head_dim
        assert cache.latent is not None
        q = self.q_up(self.q_down(x) if self.q_down is not None else x)
        end = start + t
        cache.latent[rows, start:end] = self.kv_down(x)
        n = end - lo
        latent, rope = (
            cache.latent[rows, lo:end]
            .to(x.dtype)
            .split([s.kv_lora_rank, s.qk_rope_head_dim], dim=-1)
        )
        k_nope, v = (
            self.kv_up(latent)
            .view(b, n, s.heads, -1)
            .split([s.qk_nope_head_dim, s.v_head_dim], dim=-1)
        )
        k = torch.cat([k_nope, rope.unsqueeze(2).expand(b, n, s.heads, -1)], dim=-1)
        return q.view(b, t, s.heads, -1).transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: LayerCache, rows: slice, start: int) -> torch.Tensor:
        b, t, _ = x.shape
        mla = self.s.attention == "mla"
        lo = max(0, start + 1 - self.window) if self.window else 0  # the first key any query sees
        qkv = self._mla if mla else self._mha
        q, k, v = qkv(x, cache, rows, start, lo)
        gqa = not mla and self.s.kv_heads != self.s.heads
        if t == 1:  # decode: one query sees the whole cached context (or window)
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        elif start == 0 and (not self.window or t <= self.window):  # plain causal attention
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:  # a later chunk, causal over the cached prefix (and within the window)
            mask = _mask(t, start, lo, self.window, x.device)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.out(o.transpose(1, 2).reshape(b, t, -1))


class ServingMoE(nn.Module):
    """Router over all experts; each local expert gets a balanced share of the tokens of the
    ranks that meet at it (``tokens * ep * top_k / E``, ``ShardSpec.ep`` = attention ranks);
    shared experts see every local token at their own (tp-split) width."""

    def __init__(self, s: ShardSpec, shared_width: int) -> None:
        super().__init__()
        self.s = s
        self.router = nn.Linear(s.hidden_size, s.num_experts, bias=False)
        width, act = s.moe_ffn_hidden_size, s.ffn_activation
        self.experts = nn.ModuleList(MLP(s.hidden_size, width, act) for _ in range(s.local_experts))
        self.shared = nn.ModuleList(
            MLP(s.hidden_size, shared_width or width, act) for _ in range(s.shared_experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        flat = x.reshape(-1, h)
        gates = self.router(flat).softmax(dim=-1).max(dim=-1).values.unsqueeze(-1)
        routed = flat.shape[0] * self.s.experts_per_token * self.s.ep
        per_expert = max(1, routed // self.s.num_experts)
        index = torch.arange(per_expert, device=x.device) % flat.shape[0]
        out = torch.zeros_like(flat)
        for expert in self.experts:
            out = out.index_add(0, index, expert(flat[index]) * gates[index])
        for shared in self.shared:
            out = out + shared(flat)
        return out.view(b, t, h)


class ServingBlock(nn.Module):
    def __init__(self, s: ServingShard, moe: bool, window: int = 0) -> None:
        super().__init__()
        sh = s.shard
        self.norm1 = nn.LayerNorm(sh.hidden_size)
        self.attn = CachedAttention(sh, window)
        self.norm2 = nn.LayerNorm(sh.hidden_size)
        self.mlp: nn.Module = (
            ServingMoE(sh, s.shared_ffn_hidden_size)
            if moe
            else MLP(sh.hidden_size, sh.ffn_hidden_size, sh.ffn_activation)
        )

    def forward(self, x: torch.Tensor, cache: LayerCache, rows: slice, start: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cache, rows, start)
        return x + self.mlp(self.norm2(x))


class ServingModel(nn.Module):
    """The profiled stage: [embedding] + blocks + final norm + LM head of the last position."""

    def __init__(self, s: ServingShard) -> None:
        super().__init__()
        sh = s.shard
        self.embed = nn.Embedding(sh.vocab_size, sh.hidden_size) if sh.with_embedding else None
        first_moe = sh.num_layers - sh.moe_layers
        self.blocks = nn.ModuleList(
            ServingBlock(s, i >= first_moe, s.sliding_window if i < s.sliding_layers else 0)
            for i in range(sh.num_layers)
        )
        self.norm = nn.LayerNorm(sh.hidden_size)
        self.head = nn.Linear(sh.hidden_size, sh.vocab_size, bias=False)

    def forward(
        self,
        inputs: torch.Tensor,
        caches: list[LayerCache],
        rows: slice,
        start: int,
        logits: bool = True,
    ) -> torch.Tensor | None:
        """Run ``inputs`` (token ids, or hidden states on a later stage) at cache positions
        ``start..``; the last position's logits when ``logits`` (a final prefill chunk or a
        decode step), else None."""
        x = self.embed(inputs) if self.embed is not None else inputs
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block(x, cache, rows, start)
        if not logits:
            return None
        out: torch.Tensor = self.head(self.norm(x[:, -1]))
        return out
