"""Catalog routes: the GPUs and models a spec can name by id."""

from __future__ import annotations

from fastapi import APIRouter

from search_spaces.catalog import all_gpus
from search_spaces.catalog import all_models
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@router.get("/gpus", response_model=list[GPUSpec])
def list_gpus() -> list[GPUSpec]:
    return all_gpus()


@router.get("/models", response_model=list[ModelSpec])
def list_models() -> list[ModelSpec]:
    return all_models()
