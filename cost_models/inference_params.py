"""Quantization formats and per-backend constants of the serving model, read from
``inference_data.yaml`` (data, with its sources, not code).

The fitted factors of a backend are a ``ServingCalibration``: a handful of named efficiencies and
overheads that turn the ideal per-term times of ``inference_terms`` into real ones. They are the
same for every model and GPU, so what fits the published rows also transfers to others.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from typing import Literal

import yaml
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from search_spaces.specs import DType

DATA_FILE = Path(__file__).with_name("inference_data.yaml")


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WeightFormat(_Data):
    """Bytes, GEMM format and documented quality cost of one weight format."""

    bytes_per_weight: float = Field(gt=0, description="Incl. quantization scales.")
    gemm_dtype: DType = Field(description="Tensor-core format the GEMMs run in.")
    quality_loss_pct: float = Field(ge=0, description="Estimated score drop vs bf16, percent.")
    source: str


class KVFormat(_Data):
    bytes_per_element: float = Field(gt=0)
    quality_loss_pct: float = Field(ge=0)
    source: str


class ServingCalibration(_Data):
    """Fitted factors of one backend (see inference_data.yaml for each one's meaning)."""

    decode_step_s: float = Field(ge=0)
    decode_layer_s: float = Field(ge=0)
    decode_moe_layer_s: float = Field(ge=0)
    per_request_s: float = Field(ge=0)
    prefill_chunk_s: float = Field(ge=0)
    prefill_layer_s: float = Field(ge=0)
    prefill_moe_layer_s: float = Field(ge=0)
    hbm_cost: float = Field(gt=0)
    kv_cost: float = Field(gt=0)
    decode_gemm_cost: float = Field(gt=0)
    prefill_gemm_cost: float = Field(gt=0)
    moe_gemm_cost: float = Field(gt=0)
    attention_cost: float = Field(gt=0)
    collective_latency_s: float = Field(ge=0)
    link_cost: float = Field(gt=0)
    request_latency_s: float = Field(ge=0)
    first_token_steps: float = Field(ge=0)
    disagg_latency_s: float = Field(ge=0)
    prefill_burst_fraction: float = Field(ge=0, le=1)
    prefill_interference: float = Field(ge=0)

    def decode_coefficients(self) -> dict[str, float]:
        """Term name (``inference_terms.TERMS``) -> real seconds per unit, for a decode step."""
        return {
            "overhead": self.decode_step_s,
            "layers": self.decode_layer_s,
            "moe_layers": self.decode_moe_layer_s,
            "requests": self.per_request_s,
            "weights": self.hbm_cost,
            "kv_cache": self.kv_cost,
            "gemm": self.decode_gemm_cost,
            "moe_gemm": self.decode_gemm_cost * self.moe_gemm_cost,
            "attention": self.attention_cost,
            "collectives": self.collective_latency_s,
            "link": self.link_cost,
        }

    def prefill_coefficients(self) -> dict[str, float]:
        """The same for a prefill: per-chunk overhead and the large-GEMM efficiency."""
        return {
            **self.decode_coefficients(),
            "overhead": self.prefill_chunk_s,
            "layers": self.prefill_layer_s,
            "moe_layers": self.prefill_moe_layer_s,
            "requests": 0.0,
            "gemm": self.prefill_gemm_cost,
            "moe_gemm": self.prefill_gemm_cost * self.moe_gemm_cost,
        }


class BackendProfile(_Data):
    """Memory policy, defaults and calibration of one serving framework."""

    name: str
    memory_utilization: float = Field(gt=0, le=1)
    kv_fraction_of: Literal["total", "free"]
    reserve_gib: float = Field(ge=0)
    kv_reservation: Literal["full", "average"]
    default_max_batch_size: int = Field(ge=1)
    chunk_tokens: int = Field(ge=1)
    calibration: ServingCalibration


@cache
def _raw() -> dict[str, Any]:
    with DATA_FILE.open() as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


@cache
def weight_format(dtype: DType) -> WeightFormat:
    return WeightFormat.model_validate(_raw()["weight_formats"][dtype.value])


@cache
def kv_format(dtype: DType) -> KVFormat:
    return KVFormat.model_validate(_raw()["kv_formats"][dtype.value])


@cache
def backend_profile(name: str) -> BackendProfile:
    """The profile of backend ``name`` as stored in the data file."""
    return BackendProfile.model_validate({"name": name, **_raw()["backends"][name]})


def quality_loss_pct(weight_dtype: DType, kv_dtype: DType) -> float:
    """Estimated score drop of a weight + KV format pair, percent of the bf16 score (the two
    losses are small and treated as additive)."""
    return weight_format(weight_dtype).quality_loss_pct + kv_format(kv_dtype).quality_loss_pct
