"""GPU and model catalogs, loaded from the YAML data files beside this module."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from search_spaces.local_device import LOCAL_CPU_ID
from search_spaces.local_device import local_cpu_spec
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec

CATALOG_DIR = Path(__file__).parent / "catalog"


class UnknownIdError(ValueError):
    """An id not in a catalog; the message lists the closest known ids."""


@cache
def _raw(kind: str) -> dict[str, dict[str, Any]]:
    with (CATALOG_DIR / f"{kind}.yaml").open() as fh:
        data = yaml.safe_load(fh) or {}
    return {str(k): v for k, v in data.items()}


def gpu_ids() -> list[str]:
    return sorted(_raw("gpus"))


def model_ids() -> list[str]:
    return sorted(_raw("models"))


def closest_ids(wanted: str, known: list[str], n: int = 3) -> list[str]:
    """Known ids nearest to ``wanted`` (difflib ratio), best first."""
    matches = difflib.get_close_matches(wanted.lower(), known, n=n, cutoff=0.3)
    return matches or known[:n]


def _unknown(kind: str, wanted: str, known: list[str]) -> UnknownIdError:
    near = ", ".join(closest_ids(wanted, known))
    return UnknownIdError(
        f"unknown {kind} id '{wanted}'; closest known ids: {near} "
        f"(GET /v1/catalog/{kind}s lists them all)"
    )


@cache
def load_gpu(gpu_id: str) -> GPUSpec:
    if gpu_id == LOCAL_CPU_ID:  # this machine's CPU, one core per device (nominal figures)
        return local_cpu_spec()
    raw = _raw("gpus")
    if gpu_id not in raw:
        raise _unknown("gpu", gpu_id, gpu_ids())
    return GPUSpec.model_validate({"id": gpu_id, **raw[gpu_id]})


@cache
def load_model(model_id: str) -> ModelSpec:
    raw = _raw("models")
    if model_id not in raw:
        raise _unknown("model", model_id, model_ids())
    return ModelSpec.model_validate({"name": model_id, **raw[model_id]})


def all_gpus() -> list[GPUSpec]:
    return [load_gpu(i) for i in gpu_ids()]


def all_models() -> list[ModelSpec]:
    return [load_model(i) for i in model_ids()]
