"""Collective and kernel micro-benchmarks that make up a hardware profile (imports torch).

- GEMMs by shape and dtype, attention (causal SDPA forward + backward) by shape and dtype,
  tensor copies by size: in this process, with ``threads`` CPU threads.
- All-reduce, all-gather, reduce-scatter and all-to-all across ``world_size`` local processes
  with ``torch.distributed`` (gloo on a CPU, NCCL on GPUs), over message sizes.
- A few single-device training steps of small models: what the calibration is fitted on.

Times are the mean over as many repetitions as fit in ``min_time_s`` after a warm-up.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812

from cost_models.profiling.device import compute_dtype
from cost_models.profiling.device import device_name
from cost_models.profiling.device import driver_version
from cost_models.profiling.device import library_versions
from cost_models.profiling.device import pick_device
from cost_models.profiling.hardware_profile import BUS_FACTOR
from cost_models.profiling.hardware_profile import AttentionBench
from cost_models.profiling.hardware_profile import CollectiveBench
from cost_models.profiling.hardware_profile import GemmBench
from cost_models.profiling.hardware_profile import HardwareProfile
from cost_models.profiling.hardware_profile import MemoryBench
from cost_models.profiling.hardware_profile import StepBench
from cost_models.profiling.measure import measure_shard
from cost_models.profiling.shard import full_shard
from cost_models.profiling.suites import BenchSuite
from cost_models.profiling.suites import StepShape
from cost_models.profiling.suites import suite

COLLECTIVES = tuple(BUS_FACTOR)


def _repeat(fn: Callable[[], object], device: torch.device, min_time_s: float) -> float:
    """Seconds per call: the fastest of five blocks of calls (after two warm-up calls), each
    block lasting about ``min_time_s / 5``; interference only ever adds time."""
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        count, start = 0, time.perf_counter()
        while True:
            fn()
            count += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time_s / 5 or count >= 200:
                break
        best = min(best, elapsed / count)
    return best


def _matmul(a: torch.Tensor, b: torch.Tensor) -> Callable[[], object]:
    return lambda: a @ b


def _attention_step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad: torch.Tensor
) -> Callable[[], object]:
    def step() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)

    return step


def _copy(src: torch.Tensor, dst: torch.Tensor) -> Callable[[], object]:
    return lambda: dst.copy_(src)


def bench_gemm(
    shapes: Sequence[tuple[int, int, int]], dtype: torch.dtype, device: torch.device, min_s: float
) -> list[GemmBench]:
    out = []
    name = str(dtype).removeprefix("torch.")
    for m, n, k in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        t = _repeat(_matmul(a, b), device, min_s)
        out.append(GemmBench(m=m, n=n, k=k, dtype=name, time_s=t, flops_per_s=2.0 * m * n * k / t))
    return out


def bench_attention(
    shapes: Sequence[tuple[int, int, int, int]],
    dtype: torch.dtype,
    device: torch.device,
    min_s: float,
) -> list[AttentionBench]:
    """(batch, heads, seq_len, head_dim): causal forward + backward."""
    out = []
    name = str(dtype).removeprefix("torch.")
    for b, h, s, d in shapes:
        q, k, v = (
            torch.randn(b, h, s, d, device=device).to(dtype).requires_grad_() for _ in range(3)
        )
        grad = torch.randn(b, h, s, d, device=device).to(dtype)
        t = _repeat(_attention_step(q, k, v, grad), device, min_s)
        pairs = b * h * s * (s + 1) / 2
        flops = 7 * 2.0 * pairs * d  # forward QK^T, PV; backward 5 matmuls of the same size
        out.append(
            AttentionBench(
                batch=b, heads=h, seq_len=s, head_dim=d, dtype=name, time_s=t, flops_per_s=flops / t
            )
        )
    return out


def bench_memory(sizes: Sequence[int], device: torch.device, min_s: float) -> list[MemoryBench]:
    out = []
    for size in sizes:
        src = torch.ones(size // 4, device=device)
        t = _repeat(_copy(src, torch.empty_like(src)), device, min_s)
        out.append(MemoryBench(size_bytes=size, time_s=t, bytes_per_s=2.0 * size / t))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_collectives(
    world_size: int,
    sizes: Sequence[int],
    *,
    backend: str = "gloo",
    ops: Sequence[str] = COLLECTIVES,
    iters: int = 5,
    threads: int = 1,
    timeout_s: float = 300.0,
) -> list[CollectiveBench]:
    """Launch ``world_size`` local ranks of ``collective_worker`` and collect rank 0's times."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    args = {"backend": backend, "ops": list(ops), "sizes": list(sizes), "iters": iters}
    env["PARETUNE_BENCH"] = json.dumps({**args, "threads": threads})
    env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "cost_models.profiling.collective_worker"]
    procs = [
        subprocess.Popen(
            cmd,
            env={**env, "RANK": str(r), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world_size)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout_s))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        errors = " | ".join(err.strip().splitlines()[-1] for _, err in outputs if err.strip())
        raise RuntimeError(f"collective benchmark failed: {errors or 'no stderr'}")
    raw = json.loads(outputs[0][0].strip().splitlines()[-1])["results"]
    return [_collective(r, backend, world_size) for r in raw]


def _collective(raw: dict[str, float], backend: str, n: int) -> CollectiveBench:
    op, size, t = str(raw["op"]), int(raw["size_bytes"]), float(raw["time_s"])
    algbw = size / t
    return CollectiveBench(
        op=op,
        backend=backend,
        world_size=n,
        size_bytes=size,
        time_s=t,
        algbw_bytes_per_s=algbw,
        busbw_bytes_per_s=algbw * BUS_FACTOR[op](n),
    )


def bench_steps(
    shapes: Sequence[StepShape],
    device: torch.device,
    *,
    rounds: int = 2,
    warmup_steps: int = 1,
    timed_steps: int = 3,
) -> list[StepBench]:
    """Single-device training steps of small models (one micro-batch each).

    The shapes are measured in turn, ``rounds`` times over, and each keeps its fastest
    times: on a shared machine every shape then sees the same spells of interference, so
    shapes measured together (a fit set and a held-out set) stay comparable.
    """
    best: list[StepBench | None] = [None] * len(shapes)
    for _ in range(rounds):
        for i, (model, workload, config) in enumerate(shapes):
            shard = full_shard(model, workload, config, model.num_layers)
            m = measure_shard(shard, device, warmup_steps, timed_steps)
            old = best[i]
            best[i] = StepBench(
                model=model,
                workload=workload,
                config=config,
                microbatch_s=min(m.microbatch_s, old.microbatch_s if old else math.inf),
                optimizer_s=min(m.optimizer_s, old.optimizer_s if old else math.inf),
                peak_bytes=old.peak_bytes if old else m.peak_bytes,
            )
    return [b for b in best if b is not None]


def _kernels(
    bench: BenchSuite, device: torch.device, dtype: torch.dtype
) -> tuple[list[GemmBench], list[AttentionBench], list[MemoryBench]]:
    gemm = bench_gemm(bench.gemm_shapes, dtype, device, bench.min_time_s)
    if dtype != torch.float32:
        gemm += bench_gemm(bench.gemm_shapes[:2], torch.float32, device, bench.min_time_s)
    attention = bench_attention(bench.attention_shapes, dtype, device, bench.min_time_s)
    return gemm, attention, bench_memory(bench.memory_sizes, device, bench.min_time_s)


def run_microbenchmarks(
    name: str,
    *,
    quick: bool = False,
    world_size: int = 2,
    threads: int = 1,
    device_setting: str = "auto",
    with_steps: bool = True,
) -> HardwareProfile:
    """Every micro-benchmark on this machine's device, as a hardware profile."""
    started = time.perf_counter()
    bench = suite(quick)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = pick_device(device_setting)
        dtype = compute_dtype(device)
        gemm, attention, memory = _kernels(bench, device, dtype)
        steps = bench_steps(bench.steps, device, rounds=bench.step_rounds) if with_steps else []
    finally:
        torch.set_num_threads(previous)
    collectives = []
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        collectives = bench_collectives(
            world_size,
            bench.collective_sizes,
            backend=backend,
            iters=bench.collective_iters,
            threads=threads,
        )
    return HardwareProfile(
        name=name,
        device=device_name(device),
        device_kind=device.type,
        driver_version=driver_version(device),
        library_versions=library_versions(device),
        host=platform.node(),
        threads=threads,
        compute_dtype=str(dtype).removeprefix("torch."),
        gemm=gemm,
        attention=attention,
        memory=memory,
        collectives=collectives,
        steps=steps,
        duration_s=time.perf_counter() - started,
    )


def measure_steps(
    shapes: Sequence[StepShape],
    *,
    threads: int = 1,
    device_setting: str = "auto",
    rounds: int = 3,
) -> list[StepBench]:
    """Profile single-device steps of ``shapes`` with ``threads`` threads (e.g. a fit set and
    a held-out set together, see ``bench_steps``)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return bench_steps(shapes, pick_device(device_setting), rounds=rounds)
    finally:
        torch.set_num_threads(previous)


def calibration_experiment(
    *,
    quick: bool = True,
    threads: int = 1,
    world_size: int = 2,
    held_out: Sequence[StepShape] | None = None,
) -> tuple[HardwareProfile, list[StepBench]]:
    """A hardware profile of this machine and profiled held-out steps, for checking a fit.

    The fit shapes and the held-out shapes are measured together, alternating (see
    ``bench_steps``), so both see the same interference on a shared machine; the profile
    keeps only the fit shapes.
    """
    from cost_models.profiling.suites import HELD_OUT_STEPS

    bench = suite(quick)
    held = tuple(held_out if held_out is not None else HELD_OUT_STEPS)
    profile = run_microbenchmarks(
        "held-out-check", quick=quick, threads=threads, world_size=world_size, with_steps=False
    )
    steps = measure_steps(bench.steps + held, threads=threads, rounds=bench.step_rounds)
    fit_part = steps[: len(bench.steps)]
    return profile.model_copy(update={"steps": fit_part}), steps[len(bench.steps) :]
