"""Catalog routes: the GPUs and models a spec can name by id.

The catalog is packaged data, the same for the life of the process: each list is serialised
once, at its first request, and served as those bytes with an ETag afterwards."""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi import Request
from fastapi.responses import Response
from pydantic import TypeAdapter

from api.read_cache import CachedBody
from search_spaces.catalog import all_gpus
from search_spaces.catalog import all_models
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec

router = APIRouter(prefix="/v1/catalog", tags=["catalog"])


@cache
def gpus_body() -> CachedBody:
    return CachedBody.of(TypeAdapter(list[GPUSpec]).dump_json(all_gpus(), by_alias=True))


@cache
def models_body() -> CachedBody:
    return CachedBody.of(TypeAdapter(list[ModelSpec]).dump_json(all_models(), by_alias=True))


@router.get("/gpus", response_model=list[GPUSpec])
async def list_gpus(request: Request) -> Response:
    return gpus_body().response(request)


@router.get("/models", response_model=list[ModelSpec])
async def list_models(request: Request) -> Response:
    return models_body().response(request)
