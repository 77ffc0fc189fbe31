"""Kernel times by hand: shape-aware GEMMs (tiles, waves, K overhead, roofline) and attention."""

from __future__ import annotations

import pytest

from cost_models.kernels import AttentionShape
from cost_models.kernels import GemmRate
from cost_models.kernels import causal_pairs_per_query
from cost_models.kernels import flash_attention_times_s
from cost_models.kernels import gemm_time_s
from cost_models.kernels import gemm_train_times_s
from cost_models.kernels import unfused_attention_times_s

TFLOPS = 1e12


def rate(sm_count=0, k_overhead=0.0, hbm=1e15, in_bytes=2.0, flops=100 * TFLOPS):
    return GemmRate(flops, k_overhead, sm_count, hbm, in_bytes)


def test_large_gemm_runs_at_the_calibrated_rate():
    # 4096^3 on 100 TFLOP/s: 2 * 4096^3 / 1e14 s; tiles divide evenly, no SMs given
    assert gemm_time_s(4096, 4096, 4096, rate()) == pytest.approx(2 * 4096**3 / 1e14)


def test_padding_to_whole_tiles():
    """n = 200 computes 256 columns (one 256-wide tile, or two 128-wide ones)."""
    t = gemm_time_s(1024, 200, 1024, rate())
    assert t == pytest.approx(2 * 1024 * 256 * 1024 / 1e14)


def test_wave_quantisation_leaves_sms_idle():
    """132 SMs: 133 tiles of 128x256 take two waves (131 slots idle); 266 tiles of 128x128
    take three waves of half the work each, 1.5 big-tile waves: the kernel picks that."""
    r = rate(sm_count=132)
    m, n = 128 * 133, 256
    one_wave_of_work = 2 * 128 * 256 * 1024 * 132 / 1e14
    assert gemm_time_s(m, n, 1024, r) == pytest.approx(1.5 * one_wave_of_work)
    exact = gemm_time_s(128 * 132, n, 1024, r)
    assert exact == pytest.approx(one_wave_of_work)


def test_short_k_pays_the_per_tile_overhead():
    r = rate(k_overhead=256.0)
    ideal = 2 * 4096 * 4096 * 768 / 1e14
    assert gemm_time_s(4096, 4096, 768, r) == pytest.approx(ideal * (768 + 256) / 768)


def test_skinny_gemm_is_bound_by_hbm():
    """A router-like GEMM (m=8192, n=64, k=4096) on 1 TB/s: bytes, not FLOPs, set the time."""
    r = rate(hbm=1e12, flops=1000 * TFLOPS)
    traffic = 2 * (8192 * 4096 + 4096 * 64) + 2 * 8192 * 64
    assert gemm_time_s(8192, 64, 4096, r) == pytest.approx(traffic / 1e12)
    assert gemm_time_s(0, 64, 4096, r) == 0.0


def test_backward_is_dgrad_plus_wgrad_shapes():
    r = rate(k_overhead=128.0)
    fwd, bwd = gemm_train_times_s(4096, 1024, 8192, r)
    assert fwd == pytest.approx(gemm_time_s(4096, 1024, 8192, r))
    dgrad = gemm_time_s(4096, 8192, 1024, r)  # K = n = 1024: pays more overhead
    wgrad = gemm_time_s(8192, 1024, 4096, r)
    assert bwd == pytest.approx(dgrad + wgrad)
    assert dgrad > fwd  # the short reduction dimension shows up in the backward only


def test_grouped_gemm_shares_waves():
    r = rate(sm_count=100)
    one = gemm_time_s(128, 128, 1024, r)  # 1 tile of 128x128: one wave, 99 SMs idle
    assert gemm_time_s(128, 128, 1024, r, groups=100) == pytest.approx(one)  # 100 tiles: 1 wave
    assert gemm_time_s(128, 128, 1024, r, groups=101) == pytest.approx(2 * one)


def test_causal_pairs_include_the_diagonal_blocks():
    assert causal_pairs_per_query(8192) == 8192 / 2 + 64
    assert causal_pairs_per_query(64) == 64  # capped at the sequence
    assert causal_pairs_per_query(8192, causal=False) == 8192


def test_flash_attention_flops_and_softmax_work():
    """Per pair: forward QK^T + PV = 2*(d + d) FLOPs, backward 5 matmuls = 2*(3d + 2d), plus
    the softmax work once per pass."""
    shape = AttentionShape(batch_heads=32, q_len=4096, kv_len=2048 + 64, d_qk=128, d_v=128)
    pairs = 32 * 4096 * (2048 + 64)
    fwd, bwd = flash_attention_times_s(shape, 1000 * TFLOPS, 0.5, softmax_flops_per_pair=100)
    assert fwd == pytest.approx(pairs * (4 * 128 + 100) / 500e12)
    assert bwd == pytest.approx(pairs * (10 * 128 + 100) / 500e12)
    # a smaller head dim loses a larger share to the softmax
    small = AttentionShape(batch_heads=64, q_len=4096, kv_len=2048 + 64, d_qk=64, d_v=64)
    assert sum(flash_attention_times_s(small, 1e15, 0.5, 100)) > fwd + bwd


def test_unfused_attention_computes_the_full_square_and_streams_scores():
    r = rate()
    shape = AttentionShape(batch_heads=16, q_len=2048, kv_len=2048, d_qk=64, d_v=64)
    fwd, bwd = unfused_attention_times_s(shape, r, softmax_bytes_per_pair=30.0)
    qk = gemm_train_times_s(2048, 2048, 64, r, 16)
    av = gemm_train_times_s(2048, 64, 2048, r, 16)
    softmax = 16 * 2048 * 2048 * 30.0 / 1e15
    assert fwd == pytest.approx(qk[0] + av[0] + softmax / 3)
    assert bwd == pytest.approx(qk[1] + av[1] + 2 * softmax / 3)
