"""`paretune estimate` and `POST /v1/estimate`: one fixed configuration per spec."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from search_spaces.job_spec import format_validation_error
from search_spaces.job_spec import parse_job_spec
from tuner.kinds import UnsupportedError
from tuner.kinds import kind_of


def _explain(kind: str, spec: Any, config: Any, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The term-by-term sections of ``cost_models.explain`` for one estimated spec."""
    from cost_models.explain import explain_inference
    from cost_models.explain import explain_training

    if kind == "training":
        sections = explain_training(spec.model, spec.cluster, spec.workload, config)
    else:
        sections = explain_inference(result)
    return [s.as_dict() for s in sections]


def estimate_spec(raw: Any, explain: bool = False) -> dict[str, Any]:
    """Estimate one spec document; an invalid spec yields ``{"error": sentence}``. With
    ``explain``, the result also carries ``explain``: where the time and memory go."""
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
    if explain and "error" not in result:
        result = {**result, "explain": _explain(kind.name, spec, config, result)}
    return {**head, **result}


def estimate_many(docs: Any, explain: bool = False) -> list[dict[str, Any]]:
    """A list of specs (or one) answered in order; each invalid one gets its own error."""
    items = docs if isinstance(docs, list) else [docs]
    return [estimate_spec(d, explain) for d in items]
