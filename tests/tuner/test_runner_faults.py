"""The runner under faults, in one process on an SQLite file: database writes ride out a
briefly missing database, a job taken from its runner is left alone by it, a heartbeating
job is never swept from under its runner, and an orphaned one is picked up again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

import tuner.runner as runner_module
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.records import JobRecord
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tests.api.conftest import SMALL_SPEC
from tests.results.helpers import fetch
from tuner.dispatch import LocalExecutor
from tuner.runner import JobRunner
from tuner.runner import execute_job
from tuner.runner import with_db_retry

SAMPLED = {**SMALL_SPEC, "budget": {"trials": 24, "batch_size": 4, "exhaustive_limit": 0}}


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'faults.db'}")
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "DB_RETRY_DELAYS_S", (0.01, 0.01, 0.01))


def submit(factory: sessionmaker[Session], spec: dict[str, Any] = SAMPLED) -> JobRecord:
    stored = parse_job_spec(spec).model_dump(mode="json")
    with session_scope(factory) as session:
        return JobRepository(session).create_job(stored, "faults", "training")


class SlowExecutor(LocalExecutor):
    """In-process evaluation, ``delay_s`` per chunk, with a hook before each chunk."""

    def __init__(self, delay_s: float, before_chunk: Any = None) -> None:
        self.delay_s = delay_s
        self.before_chunk = before_chunk

    def run(self, spec_json: str, chunks: list[Any], options: Any = None) -> Iterator[Any]:
        for i, chunk in enumerate(chunks):
            if self.before_chunk:
                self.before_chunk()
            time.sleep(self.delay_s)
            for _, outcomes in super().run(spec_json, [chunk]):
                yield i, outcomes


def test_transient_errors_are_retried(factory: sessionmaker[Session]) -> None:
    calls = []

    def flaky(repo: JobRepository) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("select 1", {}, Exception("server closed the connection"))
        return repo.count_jobs()

    assert with_db_retry(factory, flaky) == 0
    assert len(calls) == 3


def test_other_errors_and_a_lasting_outage_are_not_hidden(factory: sessionmaker[Session]) -> None:
    def broken(repo: JobRepository) -> None:
        raise IntegrityError("insert", {}, Exception("duplicate key"))

    def away(repo: JobRepository) -> None:
        raise OperationalError("select 1", {}, Exception("connection refused"))

    with pytest.raises(IntegrityError):
        with_db_retry(factory, broken)
    with pytest.raises(OperationalError):
        with_db_retry(factory, away)


def test_a_job_taken_away_is_left_to_its_new_runner(factory: sessionmaker[Session]) -> None:
    job = submit(factory)
    with session_scope(factory) as session:
        mine = JobRepository(session).claim_next_queued("server-a")
    assert mine is not None

    def steal() -> None:  # server-a looked dead: swept, then claimed by server-b
        with session_scope(factory) as session:
            repo = JobRepository(session)
            if repo.requeue_stale(-1):
                repo.session.flush()
                assert repo.claim_next_queued("server-b") is not None

    status, result = execute_job(factory, mine, SlowExecutor(0.0, steal), heartbeat_s=0.05)
    assert (status, result) == ("lost", None)
    stored = fetch(factory, job.id)
    assert (stored.status, stored.worker_id, stored.trials_done) == ("running", "server-b", 0)


def test_a_heartbeating_job_is_not_swept_and_an_orphan_is(
    factory: sessionmaker[Session],
) -> None:
    """Two runners on one database: B sweeps with a 0.5 s staleness while A runs a 2 s job
    heartbeating every 0.1 s (A keeps it); an orphan (claimed by a dead server) is requeued
    and run."""
    orphan = submit(factory)
    with session_scope(factory) as session:
        assert JobRepository(session).claim_next_queued("dead-server") is not None
    live = submit(factory)
    a = JobRunner(factory, lambda: SlowExecutor(0.3), heartbeat_s=0.1, stale_after_s=0.5)
    b = JobRunner(factory, lambda: SlowExecutor(0.0), heartbeat_s=0.1, stale_after_s=0.5)
    a.start(sweep_stale=False)
    deadline = time.monotonic() + 10
    while fetch(factory, live.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    b.start()
    try:
        for job_id in (live.id, orphan.id):
            while fetch(factory, job_id).status != "succeeded" and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        a.stop()
        b.stop()
    done, recovered = fetch(factory, live.id), fetch(factory, orphan.id)
    assert (done.status, done.worker_id, done.trials_done) == ("succeeded", a.worker_id, 24)
    assert (recovered.status, recovered.worker_id) == ("succeeded", b.worker_id)
