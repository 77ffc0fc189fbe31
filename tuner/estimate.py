"""`paretune estimate` and `POST /v1/estimate`: one fixed configuration per spec."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from search_spaces.job_spec import format_validation_error
from search_spaces.job_spec import parse_job_spec
from tuner.kinds import UnsupportedError
from tuner.kinds import kind_of


def estimate_spec(raw: Any) -> dict[str, Any]:
    """Estimate one spec document; an invalid spec yields ``{"error": sentence}``."""
    try:
        spec = parse_job_spec(raw)
        kind = kind_of(spec)
    except ValidationError as exc:
        return {"error": format_validation_error(exc)}
    except ValueError as exc:
        return {"error": str(exc)}
    config = kind.default_config(spec)
    head = {"name": spec.name or spec.model.name, "config": config.model_dump(mode="json")}
    try:
        result = kind.estimate(spec, config)
    except (UnsupportedError, ValueError) as exc:
        return {**head, "error": str(exc)}
    return {**head, **result}


def estimate_many(docs: Any) -> list[dict[str, Any]]:
    """A list of specs (or one) answered in order; each invalid one gets its own error."""
    items = docs if isinstance(docs, list) else [docs]
    return [estimate_spec(d) for d in items]
