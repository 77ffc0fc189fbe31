"""Default ranges of the inference knobs: what the search covers when a job names no values.

The ranges follow what is worth searching on the given model and cluster (see
``default_knobs``); the rules in ``inference_rules`` then drop what cannot run.
"""

from __future__ import annotations

from typing import Any

from search_spaces.inference_config import BACKENDS
from search_spaces.inference_config import INFERENCE_KNOBS
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

MODES = ("aggregated", "disaggregated")
MAX_PP = 4  # deeper serving pipelines only add per-token latency; they are for capacity
BATCH_CAPS = (8, 16, 32, 64, 128, 256)  # searched at maximum throughput: TPOT vs throughput


def _powers_of_two(upto: int) -> list[int]:
    return [2**i for i in range(upto.bit_length()) if 2**i <= upto]


def _worker_counts(upto: int) -> list[int]:
    """Pool sizes searched by default: 1-8, then every multiple of 4 (keeps large clusters'
    spaces small while still allowing any prefill/decode ratio of practical interest)."""
    return [n for n in range(1, upto + 1) if n <= 8 or n % 4 == 0]


def default_knobs(
    model: ModelSpec, cluster: ClusterSpec, workload: InferenceWorkload
) -> dict[str, list[Any]]:
    """The full default range of every knob (in ``INFERENCE_KNOBS`` order).

    - mode: both when the cluster has 2 GPUs or more; backend: all three (rules drop the ones
      a GPU cannot run).
    - weight_dtype: bf16, fp8 and fp4 where the GPU has tensor cores for them, int8 only on GPUs
      without fp8 (on fp8 GPUs it is as large and less accurate), and int4 weight-only.
    - kv_dtype: bf16, fp8 (where the GPU reads it natively), int4 on Blackwell.
    - tp: powers of two up to min(NVLink domain, heads, GPUs); attention_dp and ep: powers of
      two for MoE models only; pp: 1, 2, 4 (pipelines add capacity, not speed).
    - replicas: as many as fit; max_batch_size: memory-bound, plus a few caps at maximum
      throughput (no concurrency or rate given), where the cap trades TPOT for throughput.
    - pools: the same shapes without pipelines, 1-8 then multiples of 4 prefill workers; the
      decode pool's workers (any count) are solved from the GPU count.
    """
    gpus, gpu = cluster.num_gpus, cluster.gpu
    tp = _powers_of_two(min(cluster.nvlink_domain_size, model.num_attention_heads, gpus))
    moe = _powers_of_two(min(gpus, model.num_experts)) if model.is_moe else [1]
    dtypes = [DType.bf16, DType.fp8, DType.int8, DType.int4, DType.fp4]
    weight = [
        d
        for d in dtypes
        if d in (DType.bf16, DType.int4)
        or (gpu.supports(d) and not (d == DType.int8 and gpu.supports(DType.fp8)))
    ]
    kv = [DType.bf16, DType.fp8] + ([DType.int4] if gpu.supports(DType.fp4) else [])
    unbounded = workload.concurrency is None and workload.request_rate is None
    batch: list[int | None] = [None, *BATCH_CAPS] if unbounded else [None]
    knobs: dict[str, list[Any]] = {
        "mode": list(MODES) if gpus >= 2 else ["aggregated"],
        "backend": list(BACKENDS),
        "weight_dtype": weight,
        "kv_dtype": kv,
        "tp": tp,
        "pp": [p for p in (1, 2, 4) if p <= min(gpus, MAX_PP)],
        "ep": moe,
        "attention_dp": moe,
        "replicas": [None],
        "max_batch_size": batch,
    }
    knobs.update(_pool_knobs(tp, moe, batch, gpus))
    return {k: knobs[k] for k in INFERENCE_KNOBS}


def _pool_knobs(
    tp: list[int], moe: list[int], batch: list[int | None], gpus: int
) -> dict[str, list[Any]]:
    """The pools' default ranges: the aggregated shapes without pipelines; 1-8 then multiples
    of 4 prefill workers; any decode worker count (it is solved, not searched)."""
    out: dict[str, list[Any]] = {}
    for pool in ("prefill", "decode"):
        out.update(
            {
                f"{pool}_tp": tp,
                f"{pool}_pp": [1],
                f"{pool}_ep": moe,
                f"{pool}_attention_dp": moe,
                f"{pool}_max_batch_size": batch if pool == "decode" else [None],
            }
        )
    out["prefill_workers"] = _worker_counts(max(1, gpus - 1))
    out["decode_workers"] = list(range(1, max(2, gpus)))
    return out
