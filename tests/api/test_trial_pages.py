"""Trial pages spliced from the stored JSON text hold the same JSON values, in the same field
order, as the records validated and dumped by pydantic, for every filter and order, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from api.schemas import TrialPage
from api.trial_pages import trial_page_json
from results.db import session_scope
from results.repository import JobRepository
from tests.results.helpers import trial

QUERIES: list[dict[str, Any]] = [
    {},
    {"limit": 3, "offset": 2},
    {"descending": True, "limit": 4},
    {"after": 5},
    {"state": "failed"},
    {"state": "complete", "order_by": "tokens_per_s", "descending": True},
    {"order_by": "mfu"},  # a metric some trials lack: they sort last
    {"after": 100},  # an empty page
]


def stored_trials() -> list[Any]:
    records = [trial(n, metrics={"tokens_per_s": 1000.5 * n, "mfu": n / 7}) for n in range(8)]
    records[2] = trial(
        2, "failed", {}, error='out of memory: "ünïcode" \\ and\nnewline', feasible=False
    )
    records[3] = trial(
        3,
        metrics={"tokens_per_s": 1e-5, "step_time_s": 12345678901234.5},
        feasible=False,
        violations=["memory_per_gpu_gib 90.1 > 80", "ttft_ms"],
        details={"breakdown": {"compute": 1.5, "tp": [1, 2.25, None]}, "note": "x"},
        duration_s=0.25,
        eval_key="e3",
    )
    records[5] = trial(5, "pruned", {}, evaluator="measured:cpu")
    return records


def check(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        repo = JobRepository(session)
        job_id = repo.create_job({"name": "pages"}, "pages", "training").id
        repo.add_trials(job_id, stored_trials())
    with session_scope(factory) as session:
        repo = JobRepository(session)
        for query in QUERIES:
            raw = trial_page_json(session, job_id, **query)
            page = TrialPage(
                items=repo.list_trials(job_id, **query),
                total=repo.count_trials(job_id, state=query.get("state")),
            )
            assert json.loads(raw) == json.loads(page.model_dump_json()), query
            keys = list(json.loads(raw)["items"][0]) if page.items else []
            assert keys == (list(page.model_dump()["items"][0]) if page.items else []), query
        assert trial_page_json(session, "no-such-job") == b'{"items":[],"total":0}'


def test_pages_match_the_records(migrated_factory: sessionmaker[Session]) -> None:
    check(migrated_factory)
