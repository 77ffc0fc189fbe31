"""One rank of the collective micro-benchmark (``python -m``; launched by ``microbench``).

Every rank times each operation over each message size; the slowest rank's time counts (a
collective ends when its last rank does). Rank 0 prints the results as one JSON line.
Arguments arrive as JSON in ``PARETUNE_BENCH`` plus the usual RANK / WORLD_SIZE /
MASTER_ADDR / MASTER_PORT variables.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import torch
import torch.distributed as dist


def _die_with_parent() -> None:
    """Linux: end this rank when the launcher dies (no orphaned ranks holding a port)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _op(name: str, size_bytes: int, world: int, device: torch.device) -> Callable[[], None]:
    """The collective, with nccl-tests' size meaning: all-reduce and all-to-all move
    ``size`` per rank, all-gather gathers ``size`` in all, reduce-scatter reduces ``size``."""
    n = max(world, size_bytes // 4 // world * world)
    if name == "all_reduce":
        x = torch.ones(n, device=device)
        return lambda: dist.all_reduce(x)
    if name == "all_gather":
        part, out = torch.ones(n // world, device=device), torch.empty(n, device=device)
        gather = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
        return lambda: gather(out, part)
    if name == "reduce_scatter":
        full, part = torch.ones(n, device=device), torch.empty(n // world, device=device)
        scatter = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
        return lambda: scatter(part, full)
    if name == "all_to_all":
        x, y = torch.ones(n, device=device), torch.empty(n, device=device)
        return lambda: dist.all_to_all_single(y, x)
    raise ValueError(f"unknown collective {name}")


def _time(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    for _ in range(2):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    mine = torch.tensor([(time.perf_counter() - start) / iters], dtype=torch.float64)
    dist.all_reduce(mine, op=dist.ReduceOp.MAX)
    return float(mine.item())


def main() -> None:
    _die_with_parent()
    args = json.loads(os.environ["PARETUNE_BENCH"])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    torch.set_num_threads(max(1, int(args.get("threads", 1))))
    backend = args["backend"]
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=120))
    results = []
    for name in args["ops"]:
        for size in args["sizes"]:
            t = _time(_op(name, int(size), world, device), int(args["iters"]), device)
            results.append({"op": name, "size_bytes": int(size), "time_s": t})
    if rank == 0:
        print(json.dumps({"results": results}), flush=True)
    # All ranks meet before teardown, then skip interpreter exit: gloo's threads can still be
    # joinable when C++ destructors run, which aborts (SIGABRT) a rank that already reported.
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
