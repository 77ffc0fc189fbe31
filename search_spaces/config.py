"""Deployment knobs: one point of a search space (training for now)."""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from typing import Any
from typing import Literal

from pydantic import Field
from pydantic import model_validator

from search_spaces.specs import DType
from search_spaces.specs import Frozen

Sharding = Literal["none", "zero1", "zero2", "zero3"]
Recompute = Literal["none", "selective", "full"]

TRAINING_DTYPES: tuple[DType, ...] = (DType.bf16, DType.fp8, DType.fp4)


class TrainingConfig(Frozen):
    """One training deployment. ``dp`` is derived from the cluster: num_gpus / (tp * pp * cp)."""

    tp: int = Field(default=1, ge=1, description="Tensor-parallel size.")
    pp: int = Field(default=1, ge=1, description="Pipeline-parallel size.")
    cp: int = Field(default=1, ge=1, description="Context-parallel size.")
    ep: int = Field(default=1, ge=1, description="Expert-parallel size (MoE layers).")
    vpp: int = Field(default=1, ge=1, description="Virtual stages per pipeline rank.")
    micro_batch_size: int = Field(default=1, ge=1, description="Sequences per micro-batch.")
    sharding: Literal["none", "zero1", "zero2", "zero3"] = Field(
        default="zero1", description="zero1 = Megatron distributed optimizer, zero3 = FSDP."
    )
    recompute: Literal["none", "selective", "full"] = "selective"
    sequence_parallel: bool = Field(default=False, description="Default: on when tp > 1.")
    dtype: DType = Field(default=DType.bf16, description="GEMM precision: bf16, fp8 or fp4.")

    @model_validator(mode="before")
    @classmethod
    def _default_sequence_parallel(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("sequence_parallel") is None:
            data = {k: v for k, v in data.items() if k != "sequence_parallel"}
            # A tp that is no number is left for its own validation to report.
            with suppress(TypeError, ValueError, OverflowError):
                data["sequence_parallel"] = int(data.get("tp", 1) or 1) > 1
        return data

    def dp(self, num_gpus: int) -> int:
        """Data-parallel size on ``num_gpus`` GPUs (0 when tp*pp*cp does not divide it)."""
        mp = self.tp * self.pp * self.cp
        return num_gpus // mp if num_gpus % mp == 0 else 0

    def key(self) -> str:
        """Stable short hash of the knobs, for de-duplication and caching."""
        return config_hash(self.model_dump(mode="json"))


def config_hash(data: Any) -> str:
    """Content hash of JSON-able data (sorted keys), 16 hex digits."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten_config(config: dict[str, Any], sep: str = "_", prefix: str = "") -> dict[str, Any]:
    """A stored configuration with nested sections as flat names: ``{"prefill": {"tp": 2}}``
    becomes ``prefill_tp`` (the space's knob names; ``sep="."`` for display columns)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, sep, f"{prefix}{key}{sep}"))
        else:
            out[f"{prefix}{key}"] = value
    return out
