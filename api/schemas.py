"""Response shapes of the REST API (only where they differ from the stored records)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from results.records import JobRecord
from results.records import ParetoPoint
from results.records import TrialRecord


class JobList(BaseModel):
    items: list[JobRecord]
    total: int


class TrialPage(BaseModel):
    items: list[TrialRecord]
    total: int


class ObjectivePublic(BaseModel):
    metric: str
    direction: str


class ParetoPublic(BaseModel):
    objectives: list[ObjectivePublic]
    points: list[ParetoPoint]


class RecommendationPublic(BaseModel):
    trial_number: int
    config: dict[str, Any]
    metrics: dict[str, float]
    reason: str
    launch: dict[str, str]


class ErrorPublic(BaseModel):
    """Every error but 422 (whose ``detail`` lists the fields at fault)."""

    detail: str


_WHY = {
    400: "The body is not JSON.",
    401: "A write needs an API token on this server.",
    404: "No such job, trial or result.",
    413: "The body is over the server's size limit.",
    429: "The server holds its maximum of queued and running jobs.",
    503: "The database is briefly unavailable; retry.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's error statuses (422 is documented by FastAPI)."""
    return {code: {"model": ErrorPublic, "description": _WHY[code]} for code in codes}
