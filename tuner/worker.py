"""The job runner as a process of its own (`paretune worker`), apart from the API.

Why a process: the API's reads and a job's Optuna sampler and result writing are all Python;
in one process they share the GIL, and a read waited for the sampler (p99 near a second
under load). Apart, the operating system schedules them, and the runner runs at a lower CPU
priority (``nice``) so the API answers first when the machine is busy.

`paretune serve` starts one runner process and supervises it (``api.runner_process``);
platform teams can start more, on other machines, against one PostgreSQL database: runners
claim jobs exclusively and heartbeat them (``tuner.runner``), so any number can share it.
Each runs only the command jobs its own operator allow-lists (``--command-template``; the
server passes its own to the runner it supervises), whichever server admitted them.

Signals: SIGTERM or SIGINT stop the runner (running jobs stop after their current batch and
go back to the queue with their trials); SIGUSR1 makes it look at the queue at once (the API
sends it when a job is submitted). With ``supervised``, the end of standard input (the
supervising API process closed it, or died) stops the runner too, so a runner never
outlives the server that started it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator

from results.db import database_url as resolve_database_url
from results.db import make_engine
from results.db import make_session_factory
from results.db import upgrade_to_head
from tuner.dispatch import shared_executor_factory
from tuner.runner import JobRunner

log = logging.getLogger(__name__)

# Time a stopping runner gives its running jobs to finish their batch and go back to the
# queue; the supervisor waits a little longer before it kills the process.
STOP_TIMEOUT_S = 20.0


class WorkerOptions(BaseModel):
    """What a runner process needs to know (`paretune worker`'s options; the API passes its
    own settings' values to the runner it supervises). Bad values fail at start, naming the
    option."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str
    executor: Literal["ray", "local"] = "ray"
    ray_address: str | None = None
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    poll_interval_s: float = Field(default=1.0, gt=0)
    heartbeat_s: float = Field(default=5.0, gt=0, le=300)
    stale_job_after_s: float = Field(default=30.0, gt=0)
    niceness: int = Field(default=10, ge=0, le=19)
    supervised: bool = False
    command_templates: dict[str, str] = Field(
        default_factory=dict,
        description="This runner's allow-list (name -> command template): the only command "
        "jobs it claims; empty, it runs no command job (tuner.command_allowlist).",
    )

    @model_validator(mode="after")
    def _checked_templates(self) -> WorkerOptions:
        from tuner.command_allowlist import check_templates

        object.__setattr__(self, "command_templates", check_templates(self.command_templates))
        return self

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> WorkerOptions:
        if self.stale_job_after_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"stale_job_after_s ({self.stale_job_after_s}) must exceed twice heartbeat_s "
                f"({self.heartbeat_s}), or live jobs would be taken from their runners"
            )
        return self

    @classmethod
    def create(cls, database_url: str | None = None, **given: Any) -> WorkerOptions:
        """Options from the command line; those not given (None) come from the environment
        as the server reads them (PARETUNE_DATABASE_URL, RAY_ADDRESS, PARETUNE_HEARTBEAT_S,
        PARETUNE_STALE_JOB_AFTER_S), else the defaults."""
        env = {
            "ray_address": os.environ.get("RAY_ADDRESS"),
            "heartbeat_s": os.environ.get("PARETUNE_HEARTBEAT_S"),
            "stale_job_after_s": os.environ.get("PARETUNE_STALE_JOB_AFTER_S"),
        }
        values = {k: v for k, v in given.items() if v is not None}
        values.update({k: v for k, v in env.items() if v and given.get(k) is None})
        return cls(database_url=resolve_database_url(database_url), **values)


def worker_id() -> str:
    """Names the process in the jobs it claims (``worker_id``): host and pid, so an
    operator can find the process that runs a job."""
    return f"worker-{socket.gethostname()}-{os.getpid()}"


def lower_priority(niceness: int) -> int:
    """Raise this process's niceness by ``niceness`` (children, Ray's included, inherit
    it); returns the resulting niceness."""
    if niceness <= 0:
        return os.nice(0)
    try:
        return os.nice(niceness)
    except OSError as exc:  # a container may forbid it; the runner still works
        log.warning("could not lower the runner's CPU priority: %s", exc)
        return os.nice(0)


def _watch_stdin(stop: threading.Event) -> None:
    """Set ``stop`` when standard input ends: the supervising process closed its end of the
    pipe, or died (the kernel closes it then, however the process ended)."""
    try:  # the raw descriptor: a buffered read holds a lock that aborts interpreter exit
        while os.read(sys.stdin.fileno(), 4096):
            pass
    except (OSError, ValueError):
        pass
    if not stop.is_set():
        log.info("the supervising server is gone; stopping the runner")
    stop.set()


def run_worker(options: WorkerOptions) -> int:
    """Run jobs until told to stop; returns the process exit code (0 on a clean stop).

    Ray is initialised here, in the main thread: a Ray driver initialised in another
    thread takes the process down when that thread ends."""
    stop = threading.Event()
    nice = lower_priority(options.niceness)
    engine = make_engine(options.database_url)
    upgrade_to_head(engine)  # idempotent; a runner on another machine may start first
    factory = make_session_factory(engine)
    runner = JobRunner(
        factory,
        shared_executor_factory(options.executor, options.ray_address),
        max_concurrent_jobs=options.max_concurrent_jobs,
        poll_interval_s=options.poll_interval_s,
        heartbeat_s=options.heartbeat_s,
        stale_after_s=options.stale_job_after_s,
        worker_id=worker_id(),
        command_templates=options.command_templates,
    )

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def on_wake(signum: int, _frame: FrameType | None) -> None:
        runner.wake()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_wake)
    # A supervised runner is started with SIGUSR1 blocked (its default action would kill a
    # runner still importing); handled now, so wake-ups are let through.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    if options.supervised:
        threading.Thread(target=_watch_stdin, args=(stop,), name="stdin-watch", daemon=True).start()
    runner.start()
    log.info(
        "runner %s ready (pid %d, niceness %d): database %s, executor %s, %d job slot(s), %s",
        runner.worker_id,
        os.getpid(),
        nice,
        engine.url.render_as_string(hide_password=True),
        options.executor,
        options.max_concurrent_jobs,
        runner.commands.describe(),
    )
    while not stop.wait(1.0):  # a timed wait, so signal handlers run promptly
        pass
    log.info("runner %s stopping: running jobs go back to the queue", runner.worker_id)
    runner.stop(STOP_TIMEOUT_S)
    if runner.alive():
        log.warning("runner %s: a job did not stop in %.0f s", runner.worker_id, STOP_TIMEOUT_S)
    engine.dispose()
    log.info("runner %s stopped", runner.worker_id)
    return 0
