"""Efficiency constants of the analytical cost models, per GPU generation, stored as data.

The cost models compute ideal times from datasheet figures (peak FLOP/s, HBM, NVLink and NIC
bandwidth); these constants say what fraction of those ideals real kernels and collectives reach
and how much communication stays exposed. They are few, named, and keyed by GPU generation only:
no per-model or per-row corrections, so what fits the published rows also transfers to other
models. Values live in ``calibration.yaml`` (the ``default`` entry plus per-generation
overrides); ``load_calibration`` merges them into a frozen ``Calibration``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

CALIBRATION_FILE = Path(__file__).with_name("calibration.yaml")
DEFAULT_ENTRY = "default"


class Calibration(BaseModel):
    """Named efficiency constants for one GPU generation (see calibration.yaml for the why)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generation: str = DEFAULT_ENTRY
    gemm_efficiency_bf16: float = Field(
        gt=0, le=1, description="Large bf16/fp16 GEMMs, of the dense peak."
    )
    gemm_efficiency_fp8: float = Field(gt=0, le=1, description="Large fp8 GEMMs, of the peak.")
    gemm_efficiency_fp4: float = Field(gt=0, le=1, description="Large fp4 GEMMs, of the peak.")
    gemm_tile_overhead_k: float = Field(
        ge=0, description="Fixed work per output tile, in steps of its K loop (kernels.py)."
    )
    attention_efficiency: float = Field(
        gt=0, le=1, description="FlashAttention matmuls, of the dense bf16 peak."
    )
    attention_softmax_flops_per_pair: float = Field(
        ge=0, description="Non-tensor-core work per (query, key) pair and pass, in matmul FLOPs."
    )
    attention_tile_overhead_keys: float = Field(
        ge=0, description="Fixed work per FlashAttention query block, in keys (kernels.py)."
    )
    unfused_softmax_bytes_per_pair: float = Field(
        ge=0, description="HBM bytes per stored score, forward + backward (unfused attention)."
    )
    hbm_efficiency: float = Field(gt=0, le=1, description="Of the HBM bandwidth.")
    elementwise_passes: float = Field(
        ge=0,
        description="bf16 reads+writes of each h- and f-wide activation per layer per token "
        "(norms, activation function, residuals, casts; forward + backward).",
    )
    loss_bytes_per_logit: float = Field(
        ge=0, description="HBM bytes per vocabulary logit per token in softmax cross-entropy."
    )
    moe_expert_overhead_s: float = Field(
        ge=0,
        description="Fixed time per local expert, MoE layer and micro-batch (forward + "
        "backward): token-count sync, splits and small kernels of dropless dispatch.",
    )
    nvlink_efficiency: float = Field(gt=0, le=1, description="Achieved busbw / NVLink bw.")
    scaleout_efficiency: float = Field(gt=0, le=1, description="Achieved busbw / NIC bw.")
    nvlink_latency_s: float = Field(ge=0, description="Per ring step inside a domain.")
    scaleout_latency_s: float = Field(ge=0, description="Per ring step across domains.")
    tp_comm_exposed_fraction: float = Field(
        ge=0, le=1, description="Of the TP collectives, when the framework overlaps them."
    )
    ep_comm_exposed_fraction: float = Field(ge=0, le=1)
    fsdp_comm_exposed_fraction: float = Field(
        ge=0, le=1, description="Of the ZeRO-3/FSDP collectives that compute could hide."
    )
    pp_p2p_exposed_fraction: float = Field(ge=0, le=1)
    working_margin_gib: float = Field(
        ge=0, description="CUDA context, NCCL/cuBLAS workspaces, per GPU."
    )
    fragmentation_fraction: float = Field(
        ge=0, le=1, description="Allocator fragmentation, as a share of the other terms."
    )


@cache
def _entries() -> dict[str, dict[str, Any]]:
    with CALIBRATION_FILE.open() as fh:
        data = yaml.safe_load(fh) or {}
    return {str(k).lower(): dict(v or {}) for k, v in data.items()}


def calibration_generations() -> list[str]:
    """Generations with an entry of their own (others fall back to ``default``)."""
    return sorted(k for k in _entries() if k != DEFAULT_ENTRY)


@cache
def load_calibration(generation: str) -> Calibration:
    """The constants of ``generation`` (case-insensitive): its entry over the default entry."""
    entries = _entries()
    key = generation.strip().lower()
    merged = {**entries[DEFAULT_ENTRY], **entries.get(key, {})}
    return Calibration(generation=key if key in entries else DEFAULT_ENTRY, **merged)
