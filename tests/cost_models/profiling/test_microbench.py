"""Micro-benchmarks for real: kernels in this process, collectives across two gloo processes
stored as a hardware profile in the database, and the alpha-beta fit of collective times."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cost_models.profiling.device import device_name
from cost_models.profiling.device import driver_version
from cost_models.profiling.device import library_versions
from cost_models.profiling.fit import fit_alpha_beta
from cost_models.profiling.hardware_profile import CollectiveBench
from cost_models.profiling.hardware_profile import HardwareProfile
from cost_models.profiling.microbench import COLLECTIVES
from cost_models.profiling.microbench import bench_attention
from cost_models.profiling.microbench import bench_collectives
from cost_models.profiling.microbench import bench_gemm
from cost_models.profiling.microbench import bench_memory
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.hardware_profiles import HardwareProfileRepository
from tuner.hardware_profiles import store_profile

CPU = torch.device("cpu")
KIB = 1024


def test_kernel_benchmarks_time_gemms_attention_and_copies() -> None:
    gemm = bench_gemm([(64, 64, 64), (128, 256, 64)], torch.float32, CPU, 0.01)
    assert [(g.m, g.n, g.k) for g in gemm] == [(64, 64, 64), (128, 256, 64)]
    assert all(g.time_s > 0 and g.flops_per_s == 2 * g.m * g.n * g.k / g.time_s for g in gemm)
    (attn,) = bench_attention([(1, 2, 64, 32)], torch.float32, CPU, 0.01)
    assert attn.flops_per_s > 0 and attn.dtype == "float32"
    (copy,) = bench_memory([1 << 20], CPU, 0.01)
    assert copy.bytes_per_s == pytest.approx(2 * copy.size_bytes / copy.time_s)


def test_two_process_gloo_collectives_land_in_the_database(tmp_path: Path) -> None:
    benches = bench_collectives(2, [16 * KIB, 256 * KIB], backend="gloo", iters=2)
    assert {b.op for b in benches} == set(COLLECTIVES)
    assert all(b.world_size == 2 and b.backend == "gloo" and b.time_s > 0 for b in benches)
    all_reduce = [b for b in benches if b.op == "all_reduce"]
    assert all(b.busbw_bytes_per_s == pytest.approx(b.algbw_bytes_per_s) for b in all_reduce)
    profile = HardwareProfile(
        name="ci-gloo",
        device=device_name(CPU),
        device_kind="cpu",
        driver_version=driver_version(CPU),
        library_versions=library_versions(CPU),
        host="test",
        threads=1,
        compute_dtype="float32",
        collectives=benches,
    )
    engine = make_engine(f"sqlite:///{tmp_path / 'profiles.db'}")
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        stored = store_profile(session, profile, fit=None)
    with session_scope(factory) as session:
        repo = HardwareProfileRepository(session)
        latest = repo.latest("ci-gloo")
        found = repo.find(profile.device, profile.driver_version, profile.library_versions)
    engine.dispose()
    assert latest is not None and latest.id == stored.id
    assert [f.id for f in found] == [stored.id]
    assert latest.library_versions["torch"] == torch.__version__
    again = HardwareProfile.model_validate(latest.data)
    assert again.collectives == benches


def test_alpha_beta_fit_recovers_bandwidth_and_latency() -> None:
    busbw, alpha, n = 2e9, 5e-6, 4
    rows = []
    for size in (1 << 12, 1 << 16, 1 << 20, 1 << 24):
        t = 2 * (n - 1) * alpha + 2 * (n - 1) / n * size / busbw
        rows.append(
            CollectiveBench(
                op="all_reduce",
                backend="nccl",
                world_size=n,
                size_bytes=size,
                time_s=t,
                algbw_bytes_per_s=size / t,
                busbw_bytes_per_s=2 * (n - 1) / n * size / t,
            )
        )
    fitted = fit_alpha_beta(rows, "all_reduce")
    assert fitted is not None
    assert fitted[0] == pytest.approx(busbw, rel=1e-6)
    assert fitted[1] == pytest.approx(alpha, rel=1e-6)
    assert fit_alpha_beta(rows[:1], "all_reduce") is None
    # Noise that leaves no positive slope: the largest message's bus bandwidth, latency 0.
    noisy = [rows[0].model_copy(update={"time_s": rows[-1].time_s * 2}), rows[-1]]
    low_bound = fit_alpha_beta(noisy, "all_reduce")
    assert low_bound == pytest.approx((rows[-1].busbw_bytes_per_s, 0.0))
    assert low_bound is not None and low_bound[0] < busbw
