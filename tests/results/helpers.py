"""Small builders and probes shared by the results and runner tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import session_scope
from results.records import JobRecord
from results.records import TrialRecord
from results.repository import JobRepository

SPEC: dict[str, Any] = {"kind": "training", "model": "llama-3.1-8b", "budget": {"trials": 10}}


def trial(
    number: int,
    state: str = "complete",
    metrics: dict[str, float] | None = None,
    *,
    feasible: bool = True,
    key: str | None = None,
    evaluator: str = "analytical",
    **fields: Any,
) -> TrialRecord:
    return TrialRecord(
        number=number,
        config={"tp": 1 + number % 8, "pp": 1},
        config_key=key or f"key-{number}",
        state=state,
        metrics={"tokens_per_s": float(number)} if metrics is None else metrics,
        feasible=feasible,
        evaluator=evaluator,
        **fields,
    )


def fetch(factory: sessionmaker[Session], job_id: str) -> JobRecord:
    """The stored job (it must exist)."""
    with session_scope(factory) as session:
        job = JobRepository(session).get_job(job_id)
    assert job is not None
    return job


def wait_for(
    factory: sessionmaker[Session],
    job_id: str,
    check: Callable[[JobRecord], bool],
    timeout_s: float,
) -> JobRecord:
    """Poll the stored job until ``check`` holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = fetch(factory, job_id)
        if check(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got there: {fetch(factory, job_id)}")
