"""Serving knobs: one point of the inference search space (see DESIGN.md, inference knobs).

A *worker* is one serving engine (one ``vllm serve`` / ``sglang.launch_server`` /
``trtllm-serve`` process group). It spans ``tp * pp * attention_dp`` GPUs: ``attention_dp``
data-parallel attention ranks, each with ``tp`` tensor-parallel GPUs per pipeline stage. The MoE
layers of a worker are spread over all ``tp * attention_dp`` GPUs of a stage, ``ep`` of them
holding different experts (``ep`` must divide ``tp * attention_dp``; the remaining factor
tensor-splits each expert). Aggregated configs run ``replicas`` identical workers that both
prefill and decode; disaggregated configs run a prefill pool and a decode pool of workers with
their own shapes, and the two pools together use the whole cluster.
"""

from __future__ import annotations

from typing import Any
from typing import Literal
from typing import Self

from pydantic import Field
from pydantic import ValidationError
from pydantic import field_validator
from pydantic import model_validator

from search_spaces.config import config_hash
from search_spaces.specs import DType
from search_spaces.specs import Frozen

Backend = Literal["vllm", "sglang", "trtllm"]
ServingMode = Literal["aggregated", "disaggregated"]

BACKENDS: tuple[str, ...] = ("vllm", "sglang", "trtllm")
WEIGHT_DTYPES: tuple[DType, ...] = (DType.bf16, DType.fp8, DType.int8, DType.int4, DType.fp4)
KV_DTYPES: tuple[DType, ...] = (DType.bf16, DType.fp8, DType.int4)

# What each framework can serve today (its quantization docs): TensorRT-LLM's PyTorch backend
# lists FP8, NVFP4, W4A16/W4A8 AWQ/GPTQ but no INT8 SmoothQuant; vLLM and SGLang run W8A8 INT8
# checkpoints. A 4-bit KV cache is NVFP4 in TensorRT-LLM (kv_cache_config.dtype: nvfp4) and
# fp4_e2m1 in SGLang (--kv-cache-dtype); vLLM stores KV in 16 or 8 bits only.
BACKEND_WEIGHT_DTYPES: dict[str, tuple[DType, ...]] = {
    "vllm": WEIGHT_DTYPES,
    "sglang": WEIGHT_DTYPES,
    "trtllm": (DType.bf16, DType.fp8, DType.int4, DType.fp4),
}
BACKEND_KV_DTYPES: dict[str, tuple[DType, ...]] = {
    "vllm": (DType.bf16, DType.fp8),
    "sglang": KV_DTYPES,
    "trtllm": KV_DTYPES,
}

POOL_FIELDS: tuple[str, ...] = ("tp", "pp", "ep", "attention_dp", "workers", "max_batch_size")
# Top-level knobs that describe the aggregated worker; unused (left at defaults) when
# disaggregated, where each pool carries its own.
AGGREGATED_FIELDS: tuple[str, ...] = (
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "replicas",
    "max_batch_size",
)


class PoolConfig(Frozen):
    """One pool of a disaggregated deployment: ``workers`` identical workers of one shape."""

    tp: int = Field(default=1, ge=1, description="Tensor-parallel size per attention rank.")
    pp: int = Field(default=1, ge=1, description="Pipeline stages.")
    ep: int = Field(default=1, ge=1, description="Expert-parallel size of the MoE layers.")
    attention_dp: int = Field(default=1, ge=1, description="Data-parallel attention ranks.")
    workers: int = Field(default=1, ge=1, description="Workers in the pool.")
    max_batch_size: int | None = Field(
        default=None, ge=1, description="Requests in flight per worker; null = memory bound."
    )

    @property
    def gpus_per_worker(self) -> int:
        return self.tp * self.pp * self.attention_dp

    @property
    def gpus(self) -> int:
        return self.gpus_per_worker * self.workers


class InferenceConfig(Frozen):
    """One serving deployment (aggregated, or disaggregated with prefill and decode pools)."""

    backend: Backend = Field(default="vllm", description="Serving framework.")
    mode: ServingMode = "aggregated"
    tp: int = Field(default=1, ge=1, description="Tensor-parallel size per attention rank.")
    pp: int = Field(default=1, ge=1, description="Pipeline stages per worker.")
    ep: int = Field(default=1, ge=1, description="Expert-parallel size of the MoE layers.")
    attention_dp: int = Field(default=1, ge=1, description="Data-parallel attention ranks.")
    replicas: int | None = Field(
        default=None, ge=1, description="Workers; null = as many as the cluster holds."
    )
    weight_dtype: DType = Field(default=DType.bf16, description="Weight format of the GEMMs.")
    kv_dtype: DType = Field(default=DType.bf16, description="KV-cache element format.")
    max_batch_size: int | None = Field(
        default=None, ge=1, description="Requests in flight per worker; null = memory bound."
    )
    prefill: PoolConfig | None = Field(default=None, description="Disaggregated prefill pool.")
    decode: PoolConfig | None = Field(default=None, description="Disaggregated decode pool.")

    @field_validator("weight_dtype")
    @classmethod
    def _weight_dtype(cls, value: DType) -> DType:
        if value not in WEIGHT_DTYPES:
            raise ValueError(f"use one of {', '.join(str(d) for d in WEIGHT_DTYPES)}")
        return value

    @field_validator("kv_dtype")
    @classmethod
    def _kv_dtype(cls, value: DType) -> DType:
        if value not in KV_DTYPES:
            raise ValueError(f"use one of {', '.join(str(d) for d in KV_DTYPES)}")
        return value

    @model_validator(mode="after")
    def _pools_match_mode(self) -> Self:
        """Pools exist exactly in disaggregated mode, and then carry all the parallelism, so
        one deployment has one spelling (no ignored top-level knobs to mislead a reader)."""
        if self.mode == "aggregated":
            if self.prefill is not None or self.decode is not None:
                raise ValueError("prefill and decode pools apply only to mode=disaggregated")
            return self
        if self.prefill is None or self.decode is None:
            raise ValueError("mode=disaggregated needs both a prefill and a decode pool")
        defaults = {"tp": 1, "pp": 1, "ep": 1, "attention_dp": 1}
        stray = [k for k in AGGREGATED_FIELDS if getattr(self, k) != defaults.get(k)]
        if stray:
            raise ValueError(
                f"with mode=disaggregated set {', '.join(stray)} per pool "
                f"(prefill.{stray[0]}, decode.{stray[0]}), not at the top level"
            )
        return self

    def key(self) -> str:
        """Stable short hash of the knobs, for de-duplication and caching."""
        return config_hash(self.model_dump(mode="json"))

    @property
    def gpus_per_worker(self) -> int:
        """GPUs of one aggregated worker."""
        return self.tp * self.pp * self.attention_dp

    def workers(self, num_gpus: int) -> int:
        """Aggregated workers on ``num_gpus`` GPUs (``replicas`` or as many as fit)."""
        return self.replicas or num_gpus // self.gpus_per_worker

    def gpus_used(self, num_gpus: int) -> int:
        """GPUs the deployment occupies."""
        if self.prefill is not None and self.decode is not None:
            return self.prefill.gpus + self.decode.gpus
        return self.workers(num_gpus) * self.gpus_per_worker

    def to_flat(self) -> dict[str, Any]:
        """Knob name -> value, pools flattened as ``prefill_tp``, ``decode_workers``, ..."""
        flat: dict[str, Any] = {k: getattr(self, k) for k in TOP_LEVEL_KNOBS}
        for pool_name in ("prefill", "decode"):
            pool = getattr(self, pool_name)
            for f in POOL_FIELDS:
                flat[f"{pool_name}_{f}"] = getattr(pool, f) if pool is not None else None
        return flat

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> InferenceConfig:
        """The inverse of :meth:`to_flat`; knobs of the other mode are ignored."""
        mode = flat.get("mode", "aggregated")
        data: dict[str, Any] = {"mode": mode}
        for k in ("backend", "weight_dtype", "kv_dtype"):
            if flat.get(k) is not None:
                data[k] = flat[k]
        if mode == "aggregated":
            data.update({k: flat[k] for k in AGGREGATED_FIELDS if flat.get(k) is not None})
        else:
            for pool_name in ("prefill", "decode"):
                pool = {f: flat.get(f"{pool_name}_{f}") for f in POOL_FIELDS}
                data[pool_name] = {f: v for f, v in pool.items() if v is not None}
        return cls.model_validate(data)


TOP_LEVEL_KNOBS: tuple[str, ...] = (
    "mode",
    "backend",
    "weight_dtype",
    "kv_dtype",
    "tp",
    "pp",
    "ep",
    "attention_dp",
    "replicas",
    "max_batch_size",
)
POOL_KNOBS: tuple[str, ...] = tuple(f"{p}_{f}" for p in ("prefill", "decode") for f in POOL_FIELDS)
INFERENCE_KNOBS: tuple[str, ...] = TOP_LEVEL_KNOBS + POOL_KNOBS


def coerce_knob_value(knob: str, value: Any) -> Any:
    """``value`` as the knob's type (``"fp8"`` -> DType.fp8); ValueError names the problem."""
    if knob not in INFERENCE_KNOBS:
        raise ValueError(
            f"unknown inference knob '{knob}'; knobs: {', '.join(INFERENCE_KNOBS)} "
            "(pool knobs are spelled prefill_<knob> / decode_<knob>)"
        )
    if knob == "mode":
        if value not in ("aggregated", "disaggregated"):
            raise ValueError(
                f"space.mode: value {value!r} is invalid: use aggregated or disaggregated"
            )
        return value
    try:
        if knob in TOP_LEVEL_KNOBS:
            return getattr(InferenceConfig.model_validate({knob: value}), knob)
        _, _, field = knob.partition("_")
        return getattr(PoolConfig.model_validate({field: value}), field)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"space.{knob}: value {value!r} is invalid: {msg}") from None
