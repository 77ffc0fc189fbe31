"""Two runners on one database, one whose operator allow-lists the benchmark command and one
that allows no command: the command jobs run on the allowing runner only, whichever server
admitted them; the other runner runs the training job and leaves the command jobs queued,
a row stored by an older server (no evaluator columns) included. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.claim_policy import command_sha256
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.records import JobRecord
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tests.api.conftest import SMALL_SPEC
from tests.api.test_command_evaluator_api import SPEC as COMMAND_SPEC
from tests.results.helpers import fetch
from tests.results.helpers import wait_for
from tuner.dispatch import LocalExecutor
from tuner.runner import JobRunner

BENCH: str = COMMAND_SPEC["evaluator"]["command"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'runners.db'}")
        admin = None
    else:
        url: str = request.getfixturevalue("pg_url")
        schema = f"paretune_runners_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, poolclass=sa.NullPool)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    upgrade_to_head(engine)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def submit(factory: sessionmaker[Session], spec: dict[str, Any], name: str) -> JobRecord:
    stored = parse_job_spec(spec).model_dump(mode="json")
    with session_scope(factory) as session:
        return JobRepository(session).create_job(stored, name, "training")


def runner(factory: sessionmaker[Session], templates: dict[str, str] | None) -> JobRunner:
    return JobRunner(
        factory,
        LocalExecutor,
        poll_interval_s=0.05,
        heartbeat_s=0.5,
        stale_after_s=60,
        command_templates=templates,
    )


def test_command_jobs_run_only_on_the_runner_that_allow_lists_them(
    factory: sessionmaker[Session],
) -> None:
    admitted = submit(factory, COMMAND_SPEC, "admitted by a server with the template")
    older = submit(factory, COMMAND_SPEC, "stored by an older server")
    with session_scope(factory) as session:  # a row from before the evaluator columns
        session.execute(
            sa.text("UPDATE jobs SET evaluator_type = NULL, command_sha256 = NULL WHERE id = :id"),
            {"id": older.id},
        )
    training = submit(factory, SMALL_SPEC, "training")

    plain = runner(factory, None)  # its operator allows no command
    plain.start(sweep_stale=False)
    try:
        done = wait_for(factory, training.id, lambda j: j.status == "succeeded", timeout_s=60)
        assert done.worker_id == plain.worker_id
        # The older row passed the claim filter once, failed the spec check and went back
        # with its columns filled in; the plain runner keeps polling and claims neither again.
        wait_for(
            factory, older.id, lambda j: j.status == "queued" and j.worker_id is None, timeout_s=60
        )
        with session_scope(factory) as session:
            row = session.execute(
                sa.text("SELECT evaluator_type, command_sha256 FROM jobs WHERE id = :id"),
                {"id": older.id},
            ).one()
        assert tuple(row) == ("command", command_sha256(BENCH))
        time.sleep(0.3)  # several polls of the plain runner
        for job_id in (admitted.id, older.id):
            job = fetch(factory, job_id)
            assert (job.status, job.worker_id, job.trials_done) == ("queued", None, 0)
        bench = runner(factory, {"bench": BENCH})
        bench.start(sweep_stale=False)
        try:
            for job_id in (admitted.id, older.id):
                job = wait_for(
                    factory, job_id, lambda j: j.status in ("succeeded", "failed"), timeout_s=60
                )
                assert (job.status, job.worker_id) == ("succeeded", bench.worker_id), job.error
                assert job.trials_done == 2
        finally:
            bench.stop()
    finally:
        plain.stop()
