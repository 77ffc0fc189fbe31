"""Job lifecycle contract, run on every backend (``factory`` is parametrised)."""

from __future__ import annotations

import threading
from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import session_scope
from results.records import JobRecord
from results.records import Recommendation
from results.repository import JobNotFoundError
from results.repository import JobRepository
from tests.results.helpers import SPEC
from tests.results.helpers import fetch
from tests.results.helpers import trial


def create(factory: sessionmaker[Session], name: str = "job", **kwargs: int) -> JobRecord:
    with session_scope(factory) as session:
        return JobRepository(session).create_job(SPEC, name, "training", **kwargs)


def claim(factory: sessionmaker[Session], worker: str) -> JobRecord | None:
    with session_scope(factory) as session:
        return JobRepository(session).claim_next_queued(worker)


def test_create_and_get(factory: sessionmaker[Session]) -> None:
    job = create(factory, "gpt", trials_planned=7)
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert (job.name, job.kind, job.status, job.trials_planned) == ("gpt", "training", "queued", 7)
    assert job.spec == SPEC
    assert job.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - job.created_at).total_seconds()) < 60
    assert (job.started_at, job.finished_at, job.best, job.worker_id) == (None, None, None, None)
    assert fetch(factory, job.id) == job
    with session_scope(factory) as session:
        assert JobRepository(session).get_job("0" * 32) is None


def test_list_newest_first_with_filter_and_pages(factory: sessionmaker[Session]) -> None:
    ids = [create(factory, f"j{i}").id for i in range(5)]
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.set_status(ids[1], "failed", "boom")
        assert [j.id for j in repo.list_jobs()] == ids[::-1]
        assert [j.id for j in repo.list_jobs(limit=2, offset=1)] == [ids[3], ids[2]]
        assert [j.id for j in repo.list_jobs(status="failed")] == [ids[1]]
        assert repo.count_jobs() == 5
        assert repo.count_jobs("queued") == 4
        with pytest.raises(ValueError, match="unknown job status"):
            repo.list_jobs(status="done")
        with pytest.raises(ValueError, match=">= 0"):
            repo.list_jobs(limit=-1)


def test_lifecycle_to_success(factory: sessionmaker[Session]) -> None:
    job = create(factory)
    claimed = claim(factory, "server-a")
    assert claimed is not None and claimed.id == job.id
    assert (claimed.status, claimed.worker_id) == ("running", "server-a")
    assert claimed.started_at is not None and claimed.heartbeat_at is not None
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.set_search_info(job.id, "exhaustive", 1234, 1234)
        repo.heartbeat(job.id)
        repo.update_best(job.id, {"trial_number": 3, "metrics": {"tokens_per_s": 1.5}})
        repo.set_status(job.id, "succeeded")
    done = fetch(factory, job.id)
    assert (done.status, done.search_mode, done.space_size, done.trials_planned) == (
        "succeeded",
        "exhaustive",
        1234,
        1234,
    )
    assert done.best == {"trial_number": 3, "metrics": {"tokens_per_s": 1.5}}
    assert done.started_at == claimed.started_at
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.error is None


def test_failure_keeps_the_error(factory: sessionmaker[Session]) -> None:
    job = create(factory)
    with session_scope(factory) as session:
        JobRepository(session).set_status(job.id, "failed", "invalid spec: tp must divide")
    failed = fetch(factory, job.id)
    assert (failed.status, failed.error) == ("failed", "invalid spec: tp must divide")
    assert failed.finished_at is not None


def test_writes_to_a_missing_job_raise(factory: sessionmaker[Session]) -> None:
    missing = "f" * 32
    with session_scope(factory) as session:
        repo = JobRepository(session)
        for call in (
            lambda: repo.set_status(missing, "running"),
            lambda: repo.set_search_info(missing, "sampled", 1, 1),
            lambda: repo.update_best(missing, {}),
            lambda: repo.cancel(missing),
            lambda: repo.add_trials(missing, [trial(0)]),
            lambda: repo.replace_pareto(missing, []),
            lambda: repo.set_recommendation(
                missing, Recommendation(trial_number=0, config={}, metrics={}, reason="r")
            ),
        ):
            with pytest.raises(JobNotFoundError):
                call()
        with pytest.raises(ValueError, match="unknown job status"):
            repo.set_status(missing, "done")


def test_claims_oldest_first_then_none(factory: sessionmaker[Session]) -> None:
    first, second = create(factory, "a"), create(factory, "b")
    assert claim(factory, "w") == fetch(factory, first.id)
    assert claim(factory, "w") == fetch(factory, second.id)
    assert claim(factory, "w") is None


def test_cancel(factory: sessionmaker[Session]) -> None:
    queued, running, finished = create(factory, "q"), create(factory, "r"), create(factory, "f")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.set_status(running.id, "running")
        repo.set_status(finished.id, "succeeded")
        assert not repo.is_cancel_requested(running.id)

        now_cancelled = repo.cancel(queued.id)
        assert now_cancelled.status == "cancelled" and now_cancelled.finished_at is not None

        flagged = repo.cancel(running.id)
        assert (flagged.status, flagged.cancel_requested) == ("running", True)
        assert repo.is_cancel_requested(running.id)

        untouched = repo.cancel(finished.id)
        assert (untouched.status, untouched.cancel_requested) == ("succeeded", False)
        assert repo.is_cancel_requested("0" * 32)  # deleted meanwhile: stop too


def test_requeue_running(factory: sessionmaker[Session]) -> None:
    orphan, stopping, queued = create(factory, "o"), create(factory, "s"), create(factory, "q")
    for _ in range(2):
        claim(factory, "dead-server")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.cancel(stopping.id)
        assert repo.requeue_running() == 1
        assert repo.requeue_running() == 0
    back = fetch(factory, orphan.id)
    assert (back.status, back.worker_id, back.started_at) == ("queued", None, None)
    assert fetch(factory, stopping.id).status == "cancelled"
    assert fetch(factory, queued.id).status == "queued"
    assert claim(factory, "new-server") == fetch(factory, orphan.id)


def test_claims_are_exclusive_across_threads(factory: sessionmaker[Session]) -> None:
    """Racing claimers, each with its own session and connection, never share a job."""
    ids = {create(factory, f"j{i}").id for i in range(12)}
    claimed: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(name: str) -> None:
        try:
            start.wait()
            while (job := claim(factory, name)) is not None:
                claimed.append(job.id)
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(claimed) == sorted(ids)


@pytest.mark.parametrize(
    "engine", [pytest.param("postgresql", marks=pytest.mark.pg)], indirect=True
)
def test_open_claim_is_skipped_not_waited_for(factory: sessionmaker[Session]) -> None:
    """PostgreSQL: while one claimer's transaction is open, a second one takes the next job
    at once (SKIP LOCKED), and finds none rather than blocking when there is no other.
    (SQLite serialises writers: there the second claimer waits for the first to commit.)"""
    first, second = create(factory, "a"), create(factory, "b")
    with session_scope(factory) as a, session_scope(factory) as b:
        got_a = JobRepository(a).claim_next_queued("a")
        got_b = JobRepository(b).claim_next_queued("b")
        assert got_a is not None and got_b is not None
        assert (got_a.id, got_b.id) == (first.id, second.id)
        with session_scope(factory) as c:
            assert JobRepository(c).claim_next_queued("c") is None


def test_delete_cascades(factory: sessionmaker[Session]) -> None:
    job, other = create(factory), create(factory, "other")
    rec = Recommendation(trial_number=1, config={"tp": 2}, metrics={"x": 1.0}, reason="best")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        for job_id in (job.id, other.id):
            repo.add_trials(job_id, [trial(0), trial(1)])
            repo.replace_pareto(job_id, [1])
            repo.set_recommendation(job_id, rec)
    with session_scope(factory) as session:
        repo = JobRepository(session)
        assert repo.delete_job(job.id) is True
        assert repo.delete_job(job.id) is False
    with session_scope(factory) as session:
        repo = JobRepository(session)
        assert repo.get_job(job.id) is None
        assert repo.count_trials(job.id) == 0
        assert repo.get_pareto(job.id) == []
        assert repo.get_recommendation(job.id) is None
        assert repo.count_trials(other.id) == 2
        assert len(repo.get_pareto(other.id)) == 1
        assert repo.get_recommendation(other.id) == rec
