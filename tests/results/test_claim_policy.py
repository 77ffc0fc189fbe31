"""A runner claims only jobs it may run: command jobs whose command its operator allow-listed.
Run on every backend (``factory`` and ``blank_engine`` are parametrised), including the
migration that adds and backfills the claim filter's columns."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.claim_policy import CommandPolicy
from results.claim_policy import command_sha256
from results.claim_policy import evaluator_columns
from results.db import alembic_config
from results.db import session_scope
from results.db import upgrade_to_head
from results.records import JobRecord
from results.repository import JobRepository
from tests.results.helpers import SPEC

BENCH = "python /opt/bench.py --tp {tp}"
OTHER = "python /opt/other.py"
COMMAND_SPEC = {**SPEC, "evaluator": {"type": "command", "command": BENCH, "template": "bench"}}


def create(factory: sessionmaker[Session], spec: dict[str, Any], name: str) -> JobRecord:
    with session_scope(factory) as session:
        return JobRepository(session).create_job(spec, name, "training")


def claim(
    factory: sessionmaker[Session], worker: str, commands: CommandPolicy | None = None
) -> JobRecord | None:
    with session_scope(factory) as session:
        repo = JobRepository(session)
        if commands is None:
            return repo.claim_next_queued(worker)
        return repo.claim_next_queued(worker, commands)


def status(factory: sessionmaker[Session], job_id: str) -> str:
    with session_scope(factory) as session:
        job = JobRepository(session).get_job(job_id)
    assert job is not None
    return job.status


def columns(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, evaluator_type, command_sha256 FROM jobs"))
        return {r.id: (r.evaluator_type, r.command_sha256) for r in rows}


def test_a_runner_without_the_template_skips_the_command_job(
    factory: sessionmaker[Session],
) -> None:
    cmd = create(factory, COMMAND_SPEC, "command first")
    training = create(factory, SPEC, "training next")
    other_only = CommandPolicy.of_templates({"other": OTHER})

    got = claim(factory, "no-commands")  # the default: no command job at all
    assert got is not None and got.id == training.id
    assert claim(factory, "other-template", other_only) is None  # skipped, not claimed
    assert status(factory, cmd.id) == "queued"

    got = claim(factory, "allowed", CommandPolicy.of_templates({"bench": BENCH}))
    assert got is not None and got.id == cmd.id
    assert (got.status, got.worker_id) == ("running", "allowed")


def test_an_allowing_runner_takes_jobs_in_age_order(factory: sessionmaker[Session]) -> None:
    cmd = create(factory, COMMAND_SPEC, "command first")
    training = create(factory, SPEC, "training next")
    allowed = CommandPolicy.of_templates([OTHER, BENCH])
    assert [claim(factory, "a", allowed), claim(factory, "a", allowed)] == [
        claim_of(factory, cmd.id),
        claim_of(factory, training.id),
    ]
    everything = create(factory, {**COMMAND_SPEC, "evaluator": "command"}, "no command")
    assert claim(factory, "a", allowed) is None  # a command job without a command: nobody's
    got = claim(factory, "local", CommandPolicy.unrestricted())
    assert got is not None and got.id == everything.id


def claim_of(factory: sessionmaker[Session], job_id: str) -> JobRecord:
    with session_scope(factory) as session:
        job = JobRepository(session).get_job(job_id)
    assert job is not None
    return job


def test_the_columns_are_set_when_a_job_is_stored(
    factory: sessionmaker[Session], engine: Engine
) -> None:
    cmd = create(factory, COMMAND_SPEC, "command")
    training = create(factory, SPEC, "training")
    stored = columns(engine)
    assert stored[cmd.id] == ("command", command_sha256(BENCH))
    assert stored[training.id] == (SPEC.get("evaluator", {}).get("type", "analytical"), None)


def test_a_row_an_older_server_stored_is_checked_and_handed_back(
    factory: sessionmaker[Session], engine: Engine
) -> None:
    """NULL columns pass the filter; the spec check refuses the job and the release fills
    the columns in, so the same runner does not claim it again."""
    cmd = create(factory, COMMAND_SPEC, "older server")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET evaluator_type = NULL, command_sha256 = NULL"))
    none = CommandPolicy.of_templates({})
    got = claim(factory, "no-commands", none)
    assert got is not None and got.id == cmd.id
    assert not none.allows(got.spec)
    with session_scope(factory) as session:
        assert JobRepository(session).release_unrunnable(cmd.id, "someone-else") is False
        assert JobRepository(session).release_unrunnable(cmd.id, "no-commands") is True
    job = claim_of(factory, cmd.id)
    assert (job.status, job.worker_id, job.started_at) == ("queued", None, None)
    assert columns(engine)[cmd.id] == ("command", command_sha256(BENCH))
    assert claim(factory, "no-commands", none) is None
    got = claim(factory, "allowed", CommandPolicy.of_templates({"bench": BENCH}))
    assert got is not None and got.id == cmd.id


def test_policy_reads_specs_like_the_parser() -> None:
    assert evaluator_columns({}) == {"evaluator_type": "analytical", "command_sha256": None}
    assert evaluator_columns({"evaluator": "profile"})["evaluator_type"] == "profile"
    assert evaluator_columns({"evaluator": {"type": "command"}}) == {
        "evaluator_type": "command",
        "command_sha256": command_sha256(""),
    }
    bench = CommandPolicy.of_templates({"bench": BENCH})
    assert bench.allows(COMMAND_SPEC) and bench.allows(SPEC)
    assert not bench.allows({"evaluator": {"type": "command", "command": BENCH + " "}})
    assert not CommandPolicy().allows(COMMAND_SPEC)
    assert CommandPolicy.unrestricted().allows(COMMAND_SPEC)


def test_migration_backfills_existing_rows(blank_engine: Engine) -> None:
    """Rows stored before revision 0003 get their columns from the spec when it runs, and
    the columns go away with a downgrade."""
    with blank_engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    specs = {
        "a" * 32: COMMAND_SPEC,
        "b" * 32: SPEC,
        "c" * 32: {**SPEC, "evaluator": "hybrid"},
        "d" * 32: {k: v for k, v in SPEC.items() if k != "evaluator"},
    }
    jobs = sa.table(
        "jobs",
        *(sa.column(c) for c in ("id", "name", "kind", "status", "created_at")),
        sa.column("spec", sa.JSON()),
        *(sa.column(c) for c in ("trials_planned", "trials_done", "trials_failed")),
        *(sa.column(c) for c in ("trials_pruned", "trials_infeasible", "cancel_requested")),
    )
    counters = dict.fromkeys(
        ("trials_planned", "trials_done", "trials_failed", "trials_pruned", "trials_infeasible"),
        0,
    )
    with blank_engine.begin() as conn:
        for job_id, spec in specs.items():
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    name=job_id[:1],
                    kind="training",
                    status="queued",
                    created_at=sa.func.now(),
                    spec=spec,
                    cancel_requested=False,
                    **counters,
                )
            )
    upgrade_to_head(blank_engine)
    assert columns(blank_engine) == {
        "a" * 32: ("command", command_sha256(BENCH)),
        "b" * 32: (evaluator_columns(SPEC)["evaluator_type"], None),
        "c" * 32: ("hybrid", None),
        "d" * 32: ("analytical", None),
    }
    with blank_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    names = {c["name"] for c in sa.inspect(blank_engine).get_columns("jobs")}
    assert not {"evaluator_type", "command_sha256"} & names
    upgrade_to_head(blank_engine)
    assert columns(blank_engine)["a" * 32] == ("command", command_sha256(BENCH))
