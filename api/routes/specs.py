"""`POST /v1/specs/parse`: a YAML (or JSON) spec document turned into JSON, so the dashboard's
paste box takes the same YAML files as the CLI without shipping a YAML parser to the browser.
It only parses text the client sent; it never reads a file named in it."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter
from fastapi import Request

from api.errors import SpecError

router = APIRouter(prefix="/v1/specs", tags=["specs"])


@router.post(
    "/parse",
    responses={422: {"description": "Not UTF-8, not valid YAML, or not one object."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-yaml": {"schema": {}}},
        }
    },
)
async def parse_spec(request: Request) -> dict[str, Any]:
    """The document as a JSON object; 422 with the line and column of a YAML error."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError([("spec", "the spec must be UTF-8 text")]) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([("spec", f"not valid YAML{where}: {problem}")]) from None
    if not isinstance(doc, dict):
        raise SpecError([("spec", "the spec must be one YAML/JSON object (a mapping of fields)")])
    return doc
