"""SQL building blocks of the repository: table handles, filters, ordering, row values.

Kept apart from ``repository.py`` so that file reads as the list of operations.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any
from typing import get_args

from sqlalchemy import Select
from sqlalchemy import Table
from sqlalchemy import UnaryExpression

from results.db import dumps_json
from results.orm import JobRow
from results.orm import ParetoPointRow
from results.orm import RecommendationRow
from results.orm import TrialRow
from results.records import JobStatus
from results.records import TrialRecord
from results.records import TrialState

JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
TRIAL_STATES: tuple[str, ...] = get_args(TrialState)
JSON_FIELDS = {"config", "metrics", "violations", "details"}
# Metric names become JSON paths inside SQL; keep them to identifiers.
_METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

jobs: Table = JobRow.__table__  # type: ignore[assignment]
trials: Table = TrialRow.__table__  # type: ignore[assignment]
pareto_points: Table = ParetoPointRow.__table__  # type: ignore[assignment]
recommendations: Table = RecommendationRow.__table__  # type: ignore[assignment]


def rowcount(result: Any) -> int:
    return int(result.rowcount)


def page(query: Select[Any], limit: int, offset: int) -> Select[Any]:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
    return query.limit(limit).offset(offset)


def job_filter(query: Select[Any], status: str | None) -> Select[Any]:
    if status is None:
        return query
    if status not in JOB_STATUSES:
        raise ValueError(f"unknown job status {status!r}; expected one of {JOB_STATUSES}")
    return query.where(jobs.c.status == status)


def trial_filter(query: Select[Any], job_id: str, state: str | None) -> Select[Any]:
    query = query.where(trials.c.job_id == job_id)
    if state is None:
        return query
    if state not in TRIAL_STATES:
        raise ValueError(f"unknown trial state {state!r}; expected one of {TRIAL_STATES}")
    return query.where(trials.c.state == state)


def trial_order(order_by: str, descending: bool) -> list[UnaryExpression[Any]]:
    """ORDER BY for trials: the number, or a metric read from the JSON in SQL.

    ``metrics[name].as_float()`` compiles to ``CAST(JSON_EXTRACT(...) AS FLOAT)`` on SQLite
    and ``CAST(metrics ->> 'name' AS FLOAT)`` on PostgreSQL, so paging stays in the database.
    """
    number = trials.c.number
    if order_by == "number":
        return [number.desc() if descending else number.asc()]
    if not _METRIC_NAME.match(order_by):
        raise ValueError(f"cannot sort by {order_by!r}: use 'number' or a metric name")
    key = trials.c.metrics[order_by].as_float()
    ordered = key.desc() if descending else key.asc()
    return [ordered.nulls_last(), number.asc()]


def is_infeasible(record: TrialRecord) -> bool:
    return not record.feasible and record.state != "failed"


def check_finite(what: str, metrics: dict[str, float]) -> None:
    """Refuse NaN/inf metrics up front, naming the culprit: JSON cannot hold them, and the
    JSON dump would otherwise turn them into nulls that no longer read back as floats."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise ValueError(
            f"{what}: metric(s) {bad} are not finite; JSON cannot store NaN or infinity "
            "(leave the metric out, or mark the trial infeasible)"
        )


def trial_values(job_id: str, record: TrialRecord, now: datetime) -> dict[str, Any]:
    """Column values of one trial row. JSON columns go through pydantic's JSON mode (which
    turns stray NaN/inf inside config or details into null); scalars stay as they are."""
    values = record.model_dump(mode="json", include=JSON_FIELDS)
    values.update(
        job_id=job_id,
        number=record.number,
        config_key=record.config_key,
        eval_key=record.eval_key,
        state=record.state,
        feasible=record.feasible,
        duration_s=record.duration_s,
        evaluator=record.evaluator,
        error=record.error,
        created_at=now,
    )
    return values


def check_json(what: str, value: Any) -> None:
    """Fail early, with a useful message and the same error on every backend, on values
    that JSON cannot hold (psycopg and SQLAlchemy would otherwise raise differently)."""
    try:
        dumps_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not storable as JSON: {exc}") from exc
