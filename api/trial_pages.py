"""A page of trials as JSON bytes, built from the stored JSON text.

The trials' ``config``, ``metrics``, ``violations`` and ``details`` are stored as JSON. Loading
them (``json.loads``), validating them into ``TrialRecord`` and dumping them back cost about
6 ms per page of 100 trials here, most of a trial page's time, and a running job's pages are
read at every poll of every open dashboard. Here those columns are read as text (``CAST AS
TEXT``: the stored text on SQLite, JSONB's canonical text on PostgreSQL) and spliced into the
page as they are; the page has the fields of ``api.schemas.TrialPage`` in the same order.
Numbers keep their stored spelling (a metric stored as 3 stays 3, not 3.0): the same JSON
values, byte for byte only where the spelling agrees.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Text
from sqlalchemy import cast
from sqlalchemy import select
from sqlalchemy.orm import Session

from results import _queries as q
from results._queries import trials
from results.repository import JobRepository

_COLUMNS = (
    trials.c.number,
    cast(trials.c.config, Text).label("config"),
    trials.c.config_key,
    trials.c.eval_key,
    trials.c.state,
    cast(trials.c.metrics, Text).label("metrics"),
    trials.c.feasible,
    cast(trials.c.violations, Text).label("violations"),
    cast(trials.c.details, Text).label("details"),
    trials.c.duration_s,
    trials.c.evaluator,
    trials.c.error,
)


# The C string quoter behind json.dumps(..., ensure_ascii=False), without its per-call set-up.
_quote: Callable[[str], str] = json.encoder.encode_basestring


def _str(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _trial_json(row: Any) -> str:
    """One trial, as ``TrialRecord.model_dump_json`` lays it out."""
    return (
        f'{{"number":{int(row.number)},"config":{row.config or "{}"},'
        f'"config_key":{_str(row.config_key)},"eval_key":{_str(row.eval_key or "")},'
        f'"state":{_str(row.state)},"metrics":{row.metrics or "{}"},'
        f'"feasible":{"true" if row.feasible else "false"},'
        f'"violations":{row.violations or "[]"},"details":{row.details or "{}"},'
        f'"duration_s":{float(row.duration_s or 0.0)!r},'
        f'"evaluator":{_str(row.evaluator)},"error":{_str(row.error)}}}'
    )


def trial_page_json(
    session: Session,
    job_id: str,
    state: str | None = None,
    after: int | None = None,
    limit: int = 100,
    offset: int = 0,
    order_by: str = "number",
    descending: bool = False,
) -> bytes:
    """``{"items": [...], "total": n}``: the page ``JobRepository.list_trials`` selects with
    the same arguments, and the count ``count_trials`` gives."""
    query = q.trial_filter(select(*_COLUMNS), job_id, state)
    if after is not None:
        query = query.where(trials.c.number > after)
    query = query.order_by(*q.trial_order(order_by, descending))
    rows = session.execute(q.page(query, limit, offset)).all()
    total = JobRepository(session).count_trials(job_id, state=state)
    items = ",".join(_trial_json(row) for row in rows)
    return f'{{"items":[{items}],"total":{total}}}'.encode()
