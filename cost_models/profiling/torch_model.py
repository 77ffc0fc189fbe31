"""A real PyTorch transformer built from a :class:`ShardSpec` (imports torch: load lazily).

Plain eager modules (pre-norm blocks, SDPA attention, GeLU or SwiGLU MLPs, balanced MoE), so
the timings are what a framework without fused kernels would see on the device. Recompute
follows the knob: ``full`` checkpoints each block, ``selective`` only the attention core.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.checkpoint import checkpoint

from cost_models.profiling.shard import ShardSpec


class Attention(nn.Module):
    """Self-attention of the local heads (MHA/GQA, or MLA with its low-rank projections)."""

    def __init__(self, s: ShardSpec) -> None:
        super().__init__()
        self.s = s
        h, bias = s.hidden_size, s.attention_bias
        if s.attention == "mla":
            assert s.kv_lora_rank and s.qk_nope_head_dim and s.qk_rope_head_dim and s.v_head_dim
            self.d_qk = s.qk_nope_head_dim + s.qk_rope_head_dim
            self.d_v = s.v_head_dim
            q_in = s.q_lora_rank or h
            self.q_down = nn.Linear(h, s.q_lora_rank, bias=False) if s.q_lora_rank else None
            self.q_up = nn.Linear(q_in, s.heads * self.d_qk, bias=False)
            self.kv_down = nn.Linear(h, s.kv_lora_rank + s.qk_rope_head_dim, bias=False)
            self.kv_up = nn.Linear(
                s.kv_lora_rank, s.heads * (s.qk_nope_head_dim + self.d_v), bias=False
            )
            self.kv_heads = s.heads
        else:
            self.d_qk = self.d_v = s.head_dim
            self.kv_heads = s.kv_heads
            self.qkv = nn.Linear(h, (s.heads + 2 * s.kv_heads) * s.head_dim, bias=bias)
        self.out = nn.Linear(s.heads * self.d_v, h, bias=bias)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        s = self.s
        if s.attention != "mla":
            q, k, v = self.qkv(x).split(
                [s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], dim=-1
            )
            return (
                q.view(b, t, s.heads, -1).transpose(1, 2),
                k.view(b, t, s.kv_heads, -1).transpose(1, 2),
                v.view(b, t, s.kv_heads, -1).transpose(1, 2),
            )
        assert s.kv_lora_rank and s.qk_nope_head_dim and s.qk_rope_head_dim
        q = self.q_up(self.q_down(x) if self.q_down is not None else x)
        latent, rope = self.kv_down(x).split([s.kv_lora_rank, s.qk_rope_head_dim], dim=-1)
        k_nope, v = (
            self.kv_up(latent).view(b, t, s.heads, -1).split([s.qk_nope_head_dim, self.d_v], dim=-1)
        )
        k = torch.cat([k_nope, rope.unsqueeze(2).expand(b, t, s.heads, -1)], dim=-1)
        return (
            q.view(b, t, s.heads, -1).transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
        )

    def _core(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s = self.s
        if s.kv_len != s.seq_len:  # keys received from the other context-parallel ranks
            reps = -(-s.kv_len // s.seq_len)
            k = k.repeat(1, 1, reps, 1)[:, :, : s.kv_len]
            v = v.repeat(1, 1, reps, 1)[:, :, : s.kv_len]
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=s.causal, enable_gqa=self.kv_heads != s.heads
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self._qkv(x)
        if self.s.recompute == "selective":
            o = checkpoint(self._core, q, k, v, use_reentrant=False)
        else:
            o = self._core(q, k, v)
        return self.out(o.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn: int, activation: str) -> None:
        super().__init__()
        self.gated = activation == "swiglu"
        self.up = nn.Linear(hidden, ffn * (2 if self.gated else 1), bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


class MoE(nn.Module):
    """Router over all experts; the local experts each get a balanced share of the routed
    tokens (``tokens * top_k * ep / E``), weighted by the router's gates."""

    def __init__(self, s: ShardSpec) -> None:
        super().__init__()
        self.s = s
        self.router = nn.Linear(s.hidden_size, s.num_experts, bias=False)
        width, act = s.moe_ffn_hidden_size, s.ffn_activation
        self.experts = nn.ModuleList(MLP(s.hidden_size, width, act) for _ in range(s.local_experts))
        self.shared = nn.ModuleList(MLP(s.hidden_size, width, act) for _ in range(s.shared_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        flat = x.reshape(-1, h)
        gates = self.router(flat).softmax(dim=-1).max(dim=-1).values.unsqueeze(-1)
        routed = flat.shape[0] * self.s.experts_per_token * self.s.ep
        per_expert = max(1, routed // self.s.num_experts)
        index = torch.arange(per_expert, device=x.device) % flat.shape[0]
        out: torch.Tensor | None = None
        for expert in self.experts:
            y = expert(flat[index]) * gates[index]
            base = torch.zeros(flat.shape, dtype=y.dtype, device=x.device) if out is None else out
            out = base.index_add(0, index, y)
        for shared in self.shared:
            out = shared(flat) if out is None else out + shared(flat)
        assert out is not None
        return out.view(b, t, h)


class Block(nn.Module):
    def __init__(self, s: ShardSpec, moe: bool) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(s.hidden_size)
        self.attn = Attention(s)
        self.norm2 = nn.LayerNorm(s.hidden_size)
        self.mlp: nn.Module = (
            MoE(s) if moe else MLP(s.hidden_size, s.ffn_hidden_size, s.ffn_activation)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ShardModel(nn.Module):
    """The profiled stage: [embedding] + blocks + final norm + LM head; returns the loss."""

    def __init__(self, s: ShardSpec) -> None:
        super().__init__()
        self.s = s
        self.embed = nn.Embedding(s.vocab_size, s.hidden_size) if s.with_embedding else None
        first_moe = s.num_layers - s.moe_layers
        self.blocks = nn.ModuleList(Block(s, i >= first_moe) for i in range(s.num_layers))
        self.norm = nn.LayerNorm(s.hidden_size)
        self.head = nn.Linear(s.hidden_size, s.vocab_size, bias=False)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs) if self.embed is not None else inputs
        for block in self.blocks:
            if self.s.recompute == "full":
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))


def make_batch(
    s: ShardSpec, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (first stage) or hidden states (later stages), and labels."""
    shape = (s.micro_batch_size, s.seq_len)
    labels = torch.randint(0, s.vocab_size, shape, generator=generator).to(device)
    if s.with_embedding:
        inputs = torch.randint(0, s.vocab_size, shape, generator=generator).to(device)
    else:
        inputs = torch.randn(*shape, s.hidden_size, generator=generator).to(device)
    return inputs, labels
