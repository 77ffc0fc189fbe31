"""Heartbeats and the stale-job sweep, on every backend: a running job is its runner's while
it heartbeats; the sweep requeues only jobs whose heartbeat went stale."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results._queries import jobs
from results.db import session_scope
from results.orm import utcnow
from results.repository import JobRepository
from tests.results.test_jobs import claim
from tests.results.test_jobs import create
from tests.results.test_jobs import fetch


def age(factory: sessionmaker[Session], job_id: str, seconds: float, column: str) -> None:
    """Move the job's ``column`` timestamp ``seconds`` into the past."""
    with session_scope(factory) as session:
        then = utcnow() - timedelta(seconds=seconds)
        session.execute(update(jobs).where(jobs.c.id == job_id).values({column: then}))


def test_heartbeat_belongs_to_the_owner(factory: sessionmaker[Session]) -> None:
    job = create(factory)
    claim(factory, "server-a")
    age(factory, job.id, 100, "heartbeat_at")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        assert repo.heartbeat(job.id, "server-a")
        assert not repo.heartbeat(job.id, "server-b"), "a job is not someone else's to keep"
        assert not repo.heartbeat(job.id), "nor an unclaimed runner's"
        assert not repo.heartbeat("0" * 32, "server-a")
    stamped = fetch(factory, job.id).heartbeat_at
    assert stamped is not None and (utcnow() - stamped).total_seconds() < 60


def test_sweep_requeues_only_stale_jobs(factory: sessionmaker[Session]) -> None:
    fresh, stale, stopping = create(factory, "f"), create(factory, "s"), create(factory, "c")
    for worker in ("alive", "dead", "dead"):
        claim(factory, worker)
    age(factory, stale.id, 120, "heartbeat_at")
    age(factory, stopping.id, 120, "heartbeat_at")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.cancel(stopping.id)
        assert repo.requeue_stale(30) == 1
        assert repo.requeue_stale(30) == 0
        assert not repo.heartbeat(stale.id, "dead"), "the dead runner lost the job"
    back = fetch(factory, stale.id)
    assert (back.status, back.worker_id, back.heartbeat_at) == ("queued", None, None)
    assert fetch(factory, stopping.id).status == "cancelled"
    assert (fetch(factory, fresh.id).status, fetch(factory, fresh.id).worker_id) == (
        "running",
        "alive",
    )
    assert claim(factory, "new-server") == fetch(factory, stale.id)


def test_unclaimed_running_jobs_go_stale_by_start_time(factory: sessionmaker[Session]) -> None:
    """`paretune tune` runs a job without a claim: until its first heartbeat, its start
    time counts."""
    recent, old = create(factory, "r"), create(factory, "o")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        repo.set_status(recent.id, "running")
        repo.set_status(old.id, "running")
    age(factory, old.id, 300, "started_at")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        assert repo.heartbeat(recent.id), "an unclaimed job heartbeats with no worker id"
        assert repo.requeue_stale(30) == 1
    assert fetch(factory, recent.id).status == "running"
    assert fetch(factory, old.id).status == "queued"
