"""GEMM and unfused-attention times over arrays of shapes, the array form of ``kernels.py``.

The formulas are the scalar ones term for term, in the same order of operations, so a batch
reproduces ``gemm_time_s`` to the last bit: tile counts are whole numbers held in float64
(exact below 2**53), and the zero-size guard becomes a mask.
"""

from __future__ import annotations

import numpy as np

from cost_models.kernels import OUT_BYTES
from cost_models.kernels import TILE_SHAPES
from cost_models.kernels import AttentionShape
from cost_models.kernels import GemmRate
from cost_models.vectorised.columns import FloatArray

ArrayLike = FloatArray | float


def gemm_time_s(
    m: ArrayLike,
    n: ArrayLike,
    k: ArrayLike,
    flops_per_s: ArrayLike,
    in_bytes: ArrayLike,
    rate: GemmRate,
    groups: ArrayLike = 1.0,
) -> FloatArray:
    """``kernels.gemm_time_s`` per row; ``flops_per_s`` and ``in_bytes`` may vary by row
    (the dtype), the other fields of ``rate`` are the GPU's."""
    sms = rate.sm_count
    best: FloatArray | None = None
    for tile_m, tile_n in TILE_SHAPES:
        tiles = np.ceil(np.divide(m, tile_m)) * np.ceil(np.divide(n, tile_n)) * groups
        slots = -(-tiles // sms) * sms if sms else tiles
        work = tile_m * tile_n * slots
        best = work if best is None else np.minimum(best, work)
    assert best is not None
    compute = 2.0 * best * (np.add(k, rate.k_overhead)) / flops_per_s
    operands = np.multiply(in_bytes, np.multiply(m, k) + np.multiply(k, n))
    traffic = np.multiply(groups, operands + np.multiply(OUT_BYTES * np.asarray(m), n))
    out = np.maximum(compute, traffic / rate.hbm_bytes_per_s)
    empty = (np.asarray(m) <= 0) | (np.asarray(n) <= 0) | (np.asarray(k) <= 0)
    empty = empty | (np.asarray(groups) <= 0)
    return np.where(empty, 0.0, out)


def gemm_train_times_s(
    m: ArrayLike,
    n: ArrayLike,
    k: ArrayLike,
    flops_per_s: ArrayLike,
    in_bytes: ArrayLike,
    rate: GemmRate,
    groups: ArrayLike = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """``kernels.gemm_train_times_s`` per row: forward, and input plus weight gradient."""
    fwd = gemm_time_s(m, n, k, flops_per_s, in_bytes, rate, groups)
    dx = gemm_time_s(m, k, n, flops_per_s, in_bytes, rate, groups)
    dw = gemm_time_s(k, n, m, flops_per_s, in_bytes, rate, groups)
    return fwd, dx + dw


def unfused_attention_times_s(
    batch_heads: FloatArray,
    q_len: FloatArray,
    d_qk: int,
    d_v: int,
    rate: GemmRate,
    softmax_bytes_per_pair: float,
) -> tuple[FloatArray, FloatArray]:
    """``kernels.unfused_attention_times_s`` per row (bf16 GEMMs at ``rate``)."""
    groups = np.maximum(1.0, np.round(batch_heads))
    s = q_len
    flops, width = rate.flops_per_s, rate.in_bytes
    qk = gemm_train_times_s(s, s, float(d_qk), flops, width, rate, groups)
    av = gemm_train_times_s(s, float(d_v), s, flops, width, rate, groups)
    softmax = batch_heads * s * s * softmax_bytes_per_pair / rate.hbm_bytes_per_s
    return qk[0] + av[0] + softmax / 3.0, qk[1] + av[1] + 2.0 * softmax / 3.0


__all__ = ["AttentionShape", "gemm_time_s", "gemm_train_times_s", "unfused_attention_times_s"]
