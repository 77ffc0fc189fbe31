"""The API's handle on whatever runs its jobs: a supervised runner process (`paretune serve`),
threads of the API process (tests), or nothing (runners on other machines).

Routes only need to wake the runner when a job is submitted, and the health route to say how
it is; everything else between the API and the runners goes through the database.
"""

from __future__ import annotations

from typing import Any
from typing import Protocol

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from api.runner_process import RunnerProcess
from api.runner_process import worker_command
from api.settings import Settings
from tuner.dispatch import shared_executor_factory
from tuner.runner import JobRunner


class RunnerHandle(Protocol):
    def wake(self) -> None:
        """A job was submitted: look at the queue now."""

    def stop(self) -> None:
        """The server stops: so does its runner (running jobs go back to the queue)."""

    def status(self) -> dict[str, Any]:
        """How the runner is, for ``GET /v1/health`` (``alive`` False = jobs do not run)."""


class EmbeddedRunner:
    """Job threads in the API process. Reads then share the GIL with the jobs' sampling and
    writing: for tests and small setups, not for a server under read load."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    def wake(self) -> None:
        self.runner.wake()

    def stop(self) -> None:
        self.runner.stop()

    def status(self) -> dict[str, Any]:
        return {"mode": "embedded", "alive": self.runner.alive(), "id": self.runner.worker_id}


class SupervisedRunner:
    """A `paretune worker` child process, restarted when it dies (``RunnerProcess``)."""

    def __init__(self, process: RunnerProcess) -> None:
        self.process = process

    def wake(self) -> None:
        self.process.wake()

    def stop(self) -> None:
        self.process.stop()

    def status(self) -> dict[str, Any]:
        return self.process.status()


class NoRunner:
    """Jobs run in `paretune worker` processes elsewhere; they poll the queue themselves."""

    def wake(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {"mode": "none", "alive": None}


def start_runner(settings: Settings, factory: sessionmaker[Session]) -> RunnerHandle:
    """Start the runner ``settings.runner`` names and return its handle."""
    if settings.runner == "none":
        return NoRunner()
    if settings.runner == "process":
        process = RunnerProcess(worker_command(settings))
        process.start()
        return SupervisedRunner(process)
    runner = JobRunner(
        factory,
        # made here, in the main thread, before serving (see shared_executor_factory)
        shared_executor_factory(settings.executor, settings.ray_address),
        max_concurrent_jobs=settings.max_concurrent_jobs,
        poll_interval_s=settings.poll_interval_s,
        heartbeat_s=settings.heartbeat_s,
        stale_after_s=settings.stale_job_after_s,
        command_templates=settings.command_templates,
    )
    runner.start()
    return EmbeddedRunner(runner)
