"""The runner process's parts that run in one process: a stopping runner gives its running job
back to the queue with its trials (and the next runner finishes it, each trial stored once);
a user's cancel still wins over a stop; `paretune worker` refuses bad options by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.repository import JobRepository
from tests.results.helpers import fetch
from tests.results.helpers import wait_for
from tests.tuner.test_runner_faults import SlowExecutor
from tests.tuner.test_runner_faults import submit
from tuner.cli import app
from tuner.runner import JobRunner
from tuner.worker import WorkerOptions
from tuner.worker import lower_priority


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'worker.db'}")
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_a_stopping_runner_gives_its_job_back_and_the_next_one_finishes_it(
    factory: sessionmaker[Session],
) -> None:
    job = submit(factory)  # 24 sampled trials in batches of 4, 0.2 s per batch
    first = JobRunner(factory, lambda: SlowExecutor(0.2), heartbeat_s=0.1, stale_after_s=60)
    first.start(sweep_stale=False)
    try:
        wait_for(factory, job.id, lambda j: j.trials_done >= 4, timeout_s=30)
    finally:
        first.stop(timeout_s=10)
    assert not first.alive(), "the job thread ended with the stop"
    released = fetch(factory, job.id)
    # Back in the queue at once (no wait for a stale heartbeat, 60 s here), trials kept.
    assert (released.status, released.worker_id) == ("queued", None)
    assert 4 <= released.trials_done < 24
    second = JobRunner(factory, lambda: SlowExecutor(0.0), heartbeat_s=0.1, stale_after_s=60)
    second.start(sweep_stale=False)
    try:
        done = wait_for(factory, job.id, lambda j: j.status == "succeeded", timeout_s=30)
    finally:
        second.stop()
    assert (done.trials_done, done.worker_id) == (24, second.worker_id)
    with session_scope(factory) as session:
        numbers = [t.number for t in JobRepository(session).all_trials(job.id)]
    assert numbers == list(range(24)), "each trial stored once, none lost"


def test_a_cancel_during_the_stop_still_cancels(factory: sessionmaker[Session]) -> None:
    job = submit(factory)

    def cancel_once() -> None:
        with session_scope(factory) as session:
            JobRepository(session).cancel(job.id)

    runner = JobRunner(
        factory, lambda: SlowExecutor(0.1, cancel_once), heartbeat_s=0.1, stale_after_s=60
    )
    runner.start(sweep_stale=False)
    wait_for(factory, job.id, lambda j: j.cancel_requested, timeout_s=30)
    runner.stop(timeout_s=10)
    assert fetch(factory, job.id).status == "cancelled"


def test_worker_options_come_from_the_environment_and_fail_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARETUNE_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("PARETUNE_STALE_JOB_AFTER_S", "3")
    monkeypatch.setenv("PARETUNE_DATABASE_URL", "sqlite:///from-env.db")
    options = WorkerOptions.create(executor="local")
    assert (options.heartbeat_s, options.stale_job_after_s) == (0.5, 3.0)
    assert options.database_url == "sqlite:///from-env.db"
    assert WorkerOptions.create(heartbeat_s=1.0, stale_job_after_s=None).heartbeat_s == 1.0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--executor", "gpu"], "executor"),
        (["--heartbeat-s", "10", "--stale-job-after-s", "15"], "stale_job_after_s"),
        (["--max-concurrent-jobs", "0"], "max_concurrent_jobs"),
        (["--nice", "40"], "niceness"),
        (["--command-template", "bench"], "NAME=TEMPLATE"),
        (["--command-template", "b c=python x.py"], "command template 'b c'"),
        (["--command-templates", "/nonexistent/templates.yaml"], "cannot read"),
    ],
)
def test_worker_command_refuses_bad_options_naming_them(
    args: list[str], named: str, tmp_path: Path
) -> None:
    res = CliRunner().invoke(app, ["worker", "--db", f"sqlite:///{tmp_path / 'w.db'}", *args])
    assert res.exit_code == 2, res.output
    assert named in res.output
    assert "Traceback" not in res.output


def test_lower_priority_raises_the_niceness() -> None:
    pid = os.fork()
    if pid == 0:  # in a child, so the test process keeps its priority
        before = os.nice(0)
        os._exit(0 if lower_priority(3) == min(19, before + 3) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_worker_options_carry_the_runners_own_allow_list() -> None:
    options = WorkerOptions(database_url="sqlite://", command_templates={"b": " python b.py "})
    assert options.command_templates == {"b": "python b.py"}
    assert WorkerOptions(database_url="sqlite://").command_templates == {}
    with pytest.raises(ValueError, match="command template 'no space'"):
        WorkerOptions(database_url="sqlite://", command_templates={"no space": "python b.py"})
