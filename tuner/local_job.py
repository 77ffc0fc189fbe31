"""`paretune tune`: one job run in this process, stored in the (embedded) database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from results.db import database_url
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.repository import JobRepository
from tuner.dispatch import make_executor
from tuner.driver import SearchResult
from tuner.kinds import AnyJobSpec
from tuner.runner import execute_job


def run_local_job(
    raw_spec: Any,
    spec: AnyJobSpec,
    db_url: str | None = None,
    executor_kind: str = "ray",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, SearchResult]:
    """Store the job, run it here, return its id and result; ValueError when it fails."""
    engine = make_engine(database_url(db_url))
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        repo = JobRepository(session)
        job = repo.create_job(spec.model_dump(mode="json"), spec.name or spec.model.name, spec.kind)
        repo.set_status(job.id, "running")
        job = repo.get_job(job.id) or job
    status, result = execute_job(factory, job, make_executor(executor_kind), progress)
    if result is None:
        with session_scope(factory) as session:
            stored = JobRepository(session).get_job(job.id)
        raise ValueError(stored.error if stored and stored.error else f"job {status}")
    engine.dispose()
    return job.id, result
