"""A tiny data-parallel transformer training run for the `command` evaluator (CPU, gloo).

Run under torchrun, e.g. two processes on this machine:

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        examples/command/train_tiny.py --micro-batch-size 4 --global-batch-size 16

Each process trains the same small causal transformer on random tokens with DDP over gloo,
accumulating micro-batches up to the global batch. After the warm-up steps it times the
training steps, and rank 0 prints one JSON object on its last stdout line with the metrics a
paretune training job optimises: tokens_per_s, tokens_per_s_per_gpu, step_time_s,
memory_per_gpu_gib (the largest peak resident set of the ranks) and the final loss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, h))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class TinyGPT(nn.Module):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.recompute = args.recompute
        self.embed = nn.Embedding(args.vocab, args.hidden)
        self.blocks = nn.ModuleList(Block(args.hidden, args.heads) for _ in range(args.layers))
        self.norm = nn.LayerNorm(args.hidden)
        self.head = nn.Linear(args.hidden, args.vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.recompute == "full" else block(x)
        return self.head(self.norm(x))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--micro-batch-size", type=int, default=2)
    p.add_argument("--global-batch-size", type=int, default=8)
    p.add_argument("--recompute", choices=["none", "selective", "full"], default="none")
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    return p.parse_args()


def train_step(model: nn.Module, opt: torch.optim.Optimizer, args: argparse.Namespace) -> float:
    """One optimizer step over this rank's micro-batches (gradients all-reduced once)."""
    world = dist.get_world_size()
    micro = max(1, args.global_batch_size // (world * args.micro_batch_size))
    loss = torch.zeros(())
    for i in range(micro):
        tokens = torch.randint(0, args.vocab, (args.micro_batch_size, args.seq_len + 1))
        sync = contextlib.nullcontext() if i == micro - 1 else model.no_sync()  # type: ignore[operator]
        with sync:
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, args.vocab), tokens[:, 1:].reshape(-1))
            (loss / micro).backward()
    opt.step()
    opt.zero_grad(set_to_none=False)
    return float(loss.detach())


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)
    model = DistributedDataParallel(TinyGPT(args))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(args.warmup):
        train_step(model, opt, args)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(model, opt, args)
    elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    peak = torch.tensor([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0])
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    step_s = float(elapsed) / args.steps
    tokens = args.global_batch_size * args.seq_len
    if rank == 0:
        metrics = {
            "tokens_per_s": tokens / step_s,
            "tokens_per_s_per_gpu": tokens / step_s / world,
            "step_time_s": step_s,
            "memory_per_gpu_gib": float(peak) / 2**30,
            "loss": loss,
            "world_size": world,
            "pid": os.getpid(),
        }
        print(json.dumps(metrics), flush=True)
    # Every rank reaches the barrier before any tears gloo down: a rank that destroys its
    # process group while a peer still talks to it can abort ("terminate called without an
    # active exception", SIGABRT) and torchrun then fails the whole run.
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: gloo's background threads may still be joinable when C++
    # static destructors run, which aborts the process after the metrics were printed.
    os._exit(0)


if __name__ == "__main__":
    main()
