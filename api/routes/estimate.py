"""`POST /v1/estimate`: one spec (an object back, 422 when invalid) or a list of specs
(a list back, each invalid item carrying its own `error`)."""

from __future__ import annotations

from typing import Annotated
from typing import Any

from fastapi import APIRouter
from fastapi import Body
from pydantic import ValidationError

from api.errors import SpecError
from api.schemas import error_responses
from search_spaces.job_spec import parse_job_spec
from tuner.estimate import estimate_many
from tuner.estimate import estimate_spec

router = APIRouter(prefix="/v1", tags=["estimate"])


@router.post("/estimate", responses=error_responses(400, 413))
def estimate(
    body: Annotated[
        dict[str, Any] | list[dict[str, Any]], Body(description="Spec(s) with config.")
    ],
) -> Any:
    if isinstance(body, list):
        return estimate_many(body)
    try:
        parse_job_spec(body)
    except ValidationError as exc:
        raise SpecError.from_validation(exc) from None
    result = estimate_spec(body)
    if "error" in result:
        raise SpecError([("config", result["error"])])
    return result
