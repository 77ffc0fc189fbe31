"""The API's job runner in a child process (`paretune worker --supervised`), kept alive.

The API starts the runner process with the server, restarts it when it dies (a crash, an
out-of-memory kill) after a growing pause, reports it on ``GET /v1/health``, wakes it when a
job is submitted (SIGUSR1) and stops it with the server (SIGTERM: its running jobs go back
to the queue, resumed by the next runner). The child's standard input is a pipe from this
process, so the runner also stops when the API dies without a word (SIGKILL): the kernel
closes the pipe then. Everything between the two processes goes through the database
(claims, progress, cancellation), so a restarted runner resumes from the stored trials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from datetime import datetime
from typing import Any

from api.settings import Settings
from tuner.worker import STOP_TIMEOUT_S

log = logging.getLogger(__name__)

RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# A runner that lived this long before dying is restarted after the shortest pause again.
STABLE_AFTER_S = 60.0
POLL_S = 0.2


def worker_command(settings: Settings) -> list[str]:
    """The `paretune worker` command line for the API's settings, its command allow-list
    included (an argument vector, not a shell line: templates need no quoting)."""
    cmd = [sys.executable, "-m", "tuner.cli", "worker", "--supervised"]
    cmd += ["--db", str(settings.database_url), "--executor", settings.executor]
    cmd += ["--max-concurrent-jobs", str(settings.max_concurrent_jobs)]
    cmd += ["--poll-interval-s", repr(settings.poll_interval_s)]
    cmd += ["--heartbeat-s", repr(settings.heartbeat_s)]
    cmd += ["--stale-job-after-s", repr(settings.stale_job_after_s)]
    cmd += ["--nice", str(settings.runner_niceness)]
    if settings.ray_address:
        cmd += ["--ray-address", settings.ray_address]
    # The runner runs only the commands this server allow-lists (no option: none at all).
    for name, template in sorted(settings.command_templates.items()):
        cmd += ["--command-template", f"{name}={template}"]
    return cmd


class RunnerProcess:
    """Starts, watches, wakes and stops one runner process."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.started_at: datetime | None = None
        self._started_s = 0.0  # on the monotonic clock, for the runner's lifetime
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="runner-watch", daemon=True)

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def _spawn(self) -> None:
        with self._lock:  # with stop(): a runner is never started after the last stop
            if self._stopping.is_set():
                return
            # SIGUSR1 (wake) would kill a runner still starting: it is born with the signal
            # blocked (a thread's mask is inherited) and unblocks it once it handles it.
            # stdout/stderr are the server's: the runner's log lines land in the server log.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            try:
                process = subprocess.Popen(self.command, stdin=subprocess.PIPE)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self._process = process
            self.started_at = datetime.now(UTC)
            self._started_s = time.monotonic()
        log.info("runner process started (pid %d)", process.pid)

    def _watch(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(POLL_S)
                continue
            if self._stopping.is_set():
                return
            lived_s = time.monotonic() - self._started_s
            failures = 0 if lived_s > STABLE_AFTER_S else failures
            delay_s = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
            failures += 1
            self.last_exit_code = process.returncode
            log.error(
                "runner process %d exited with code %s; restarting it in %.1f s",
                process.pid,
                process.returncode,
                delay_s,
            )
            _close_stdin(process)
            if self._stopping.wait(delay_s):
                return
            try:
                self._spawn()
                self.restarts += 1
            except OSError as exc:  # e.g. out of processes: try again after the next pause
                log.error("could not restart the runner process: %s", exc)

    def wake(self) -> None:
        """A job was submitted: the runner looks at the queue now, not at its next poll."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it died just now
                os.kill(process.pid, signal.SIGUSR1)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S + 10) -> None:
        """Stop the runner: SIGTERM (its jobs go back to the queue), then SIGKILL if it has
        not exited after ``timeout_s``."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error(
                    "runner process %d did not stop in %.0f s; killing it", process.pid, timeout_s
                )
                process.kill()
                process.wait(10)
        _close_stdin(process)
        if self._watcher.is_alive():
            self._watcher.join(5)

    def status(self) -> dict[str, Any]:
        """The runner as ``GET /v1/health`` reports it."""
        return {
            "mode": "process",
            "alive": self.alive(),
            "pid": self.pid,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
        }


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
