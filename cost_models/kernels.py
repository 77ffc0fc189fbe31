"""Times of the kernels a training step is made of, on one GPU: GEMMs and the attention core.

Why a GEMM's shape matters: a tensor-core GEMM computes its output in tiles of
``TILE_M x TILE_N`` elements, one tile per streaming multiprocessor (SM) at a time, in waves.
Three losses push small or skinny GEMMs far below the efficiency of large ones:

- padding: a dimension that is not a multiple of the tile still computes the whole last tile;
- wave quantisation: the last wave leaves SMs idle when the tile count is not a multiple of the
  SM count (libraries pick among tile shapes to limit this, so the better of two is taken);
- per-tile fixed work: each tile loads the first slices of its operands and writes its output
  once, worth about ``k_overhead`` steps of its K loop, so a short K (768, or a head dim of 64)
  reaches only ``K / (K + k_overhead)`` of the asymptotic rate.

A GEMM whose operands are large next to its FLOPs (a skinny N or K, e.g. the MoE router) is
bound by HBM instead: the time is the larger of the two (roofline).

The attention core is FlashAttention: its time follows the (query, key) pairs it evaluates,
with causal masking skipping the blocks above the diagonal (the diagonal blocks are computed
whole). Per pair the forward runs 2 matmuls (QK^T, PV) and the backward 5 (it recomputes
QK^T, then dV, dP, dQ, dK), plus softmax work (exponentials on the special-function units,
scaling, masking) that does not run on tensor cores, counted as matmul-FLOP equivalents per
pair. Unfused attention (Megatron before FlashAttention) runs QK^T and AV as batched GEMMs over
the whole ``s x s`` score matrix and streams the stored scores through HBM for the softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TILE_SHAPES = ((128, 256), (128, 128))  # output tiles of large bf16/fp8 tensor-core kernels
OUT_BYTES = 2.0  # GEMM outputs are written in bf16
FLASH_BLOCK = 128  # query/key block of FlashAttention kernels
FLASH_FWD_MATMULS_QK_V = (1, 1)  # forward: QK^T (d_qk wide), PV (d_v wide)
FLASH_BWD_MATMULS_QK_V = (3, 2)  # backward: QK^T, dQ, dK (d_qk wide); dV, dP (d_v wide)


@dataclass(frozen=True)
class GemmRate:
    """What a GPU offers one GEMM: calibrated peak, tile overhead, SMs, HBM bandwidth."""

    flops_per_s: float  # dense peak of the GEMM's dtype times its calibrated efficiency
    k_overhead: float  # K-loop steps worth of fixed per-tile work
    sm_count: int  # 0 = unknown: no wave quantisation
    hbm_bytes_per_s: float  # achieved HBM bandwidth
    in_bytes: float  # bytes per input element (2 bf16, 1 fp8, 0.5 fp4)


def gemm_time_s(m: float, n: float, k: float, rate: GemmRate, groups: int = 1) -> float:
    """Seconds for ``groups`` independent (m x k) @ (k x n) GEMMs run as one kernel.

    Grouped GEMMs (MoE experts) share one launch: their tiles fill the same waves.
    """
    if m <= 0 or n <= 0 or k <= 0 or groups <= 0:
        return 0.0
    sms = rate.sm_count
    best = math.inf
    for tile_m, tile_n in TILE_SHAPES:
        tiles = math.ceil(m / tile_m) * math.ceil(n / tile_n) * groups
        slots = -(-tiles // sms) * sms if sms else tiles
        best = min(best, tile_m * tile_n * slots)
    compute = 2.0 * best * (k + rate.k_overhead) / rate.flops_per_s
    traffic = groups * (rate.in_bytes * (m * k + k * n) + OUT_BYTES * m * n)
    return max(compute, traffic / rate.hbm_bytes_per_s)


def gemm_train_times_s(
    m: float, n: float, k: float, rate: GemmRate, groups: int = 1
) -> tuple[float, float]:
    """Forward and backward seconds of a linear layer (y = x W, x: m x k, W: k x n).

    The backward is two GEMMs of the same FLOPs but other shapes: the input gradient
    ``dx = dy W^T`` (m x n @ n x k) and the weight gradient ``dW = x^T dy`` (k x m @ m x n),
    whose long reduction over the tokens keeps it efficient even when k or n is small.
    """
    fwd = gemm_time_s(m, n, k, rate, groups)
    bwd = gemm_time_s(m, k, n, rate, groups) + gemm_time_s(k, n, m, rate, groups)
    return fwd, bwd


@dataclass(frozen=True)
class AttentionShape:
    """The attention core of one layer for one micro-batch on one GPU."""

    batch_heads: float  # micro-batch sequences x query heads on this GPU
    q_len: float  # query positions per sequence on this GPU (s / cp)
    kv_len: float  # key positions each query can see, on average (s/2 causal, s full)
    d_qk: int  # query/key head dim
    d_v: int  # value head dim


def causal_pairs_per_query(seq_len: float, causal: bool = True) -> float:
    """Keys a query attends to on average in a FlashAttention kernel.

    Causal masking skips the blocks above the diagonal; the diagonal blocks are computed whole,
    so a query sees ``s/2 + FLASH_BLOCK/2`` keys on average (capped at ``s``).
    """
    if not causal:
        return seq_len
    return min(seq_len, seq_len / 2.0 + FLASH_BLOCK / 2.0)


def flash_attention_times_s(
    shape: AttentionShape,
    peak_flops: float,
    efficiency: float,
    softmax_flops_per_pair: float,
    overhead_keys: float = 0.0,
) -> tuple[float, float]:
    """Forward and backward seconds of FlashAttention (see the module docstring).

    Each query block's fixed work (loading Q, rescaling and writing O and the softmax
    statistics) is worth ``overhead_keys`` more keys, so short sequences run below the rate of
    long ones.
    """
    pairs = shape.batch_heads * shape.q_len * (shape.kv_len + overhead_keys)
    rate = peak_flops * efficiency
    fq, fv = FLASH_FWD_MATMULS_QK_V
    bq, bv = FLASH_BWD_MATMULS_QK_V
    fwd = pairs * (2.0 * (fq * shape.d_qk + fv * shape.d_v) + softmax_flops_per_pair) / rate
    bwd = pairs * (2.0 * (bq * shape.d_qk + bv * shape.d_v) + softmax_flops_per_pair) / rate
    return fwd, bwd


def unfused_attention_times_s(
    shape: AttentionShape, rate: GemmRate, softmax_bytes_per_pair: float
) -> tuple[float, float]:
    """Forward and backward seconds of unfused attention over the full ``s x s`` scores.

    QK^T is a batched (s x d) @ (d x s) GEMM and AV a (s x s) @ (s x d) GEMM per head; the
    scores are written to HBM and streamed through scale, mask, softmax and dropout, which
    ``softmax_bytes_per_pair`` counts (forward and backward together, split 1:2).
    """
    groups = max(1, round(shape.batch_heads))
    s = shape.q_len
    qk = gemm_train_times_s(s, s, shape.d_qk, rate, groups)
    av = gemm_train_times_s(s, shape.d_v, s, rate, groups)
    softmax = shape.batch_heads * s * s * softmax_bytes_per_pair / rate.hbm_bytes_per_s
    return qk[0] + av[0] + softmax / 3.0, qk[1] + av[1] + 2.0 * softmax / 3.0
