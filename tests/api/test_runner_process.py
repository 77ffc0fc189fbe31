"""The job runner in its own process, end to end: real `paretune serve` (and `paretune worker`)
processes on free ports and an SQLite file, jobs submitted over HTTP.

A job completes in the runner process with each trial stored once; a runner killed mid-job is
restarted by the API (and reported on /v1/health) and the job still completes; a cancel sent
to the API stops a job running in the other process; stopping the server stops its runner
and gives its running job back to the queue, and so does killing the API outright; runners
started on their own (`paretune worker`) serve an API started with `--runner none`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.runner_process import worker_command
from api.settings import Settings
from tests.api.conftest import SMALL_SPEC
from tests.api.conftest import LiveServer
from tests.api.conftest import start_server
from tests.api.conftest import stop_server

pytestmark = pytest.mark.slow
# A runner killed with SIGKILL cannot give its job back: the sweep requeues it after 3 s.
QUICK_SWEEP = {"PARETUNE_HEARTBEAT_S": "0.5", "PARETUNE_STALE_JOB_AFTER_S": "3"}


def sampled(trials: int) -> dict[str, Any]:
    return {
        **SMALL_SPEC,
        "space": None,
        "budget": {"trials": trials, "batch_size": 8, "exhaustive_limit": 0},
    }


def job(server: LiveServer, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=30).json()
    return found


def health(server: LiveServer) -> dict[str, Any]:
    resp = httpx.get(f"{server.url}/v1/health", timeout=30)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def until(what: str, check: Callable[[], Any], timeout_s: float = 60, log: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {timeout_s} s\n{log}")


def stored_numbers(server: LiveServer, job_id: str) -> list[int]:
    numbers: list[int] = []
    after = -1
    while True:
        page = httpx.get(
            f"{server.url}/v1/jobs/{job_id}/trials",
            params={"after": after, "limit": 1000},
            timeout=30,
        ).json()["items"]
        if not page:
            return numbers
        numbers += [t["number"] for t in page]
        after = page[-1]["number"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is dead too (its parent has not reaped it yet).
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ", 1)[1].startswith("Z")


def db_job(db: Path, job_id: str) -> tuple[str, int, str | None]:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "select status, trials_done, worker_id from jobs where id = ?", (job_id,)
        ).fetchone()
    return row[0], row[1], row[2]


def test_runner_process_runs_restarts_and_cancels(tmp_path: Path) -> None:
    server = start_server(tmp_path, executor="local", extra_env=QUICK_SWEEP)
    try:
        runner = until(
            "runner up", lambda: health(server)["runner"].get("alive") and health(server)
        )
        pid = runner["runner"]["pid"]
        assert runner["status"] == "ok" and runner["runner"]["mode"] == "process"
        assert pid != server.process.pid
        api_nice = os.getpriority(os.PRIO_PROCESS, server.process.pid)
        until(  # set by the runner as it starts
            "the runner at a lower CPU priority than the API",
            lambda: os.getpriority(os.PRIO_PROCESS, pid) > api_nice,
            30,
        )

        small = server.submit(SMALL_SPEC)
        done = server.wait(small["id"], timeout_s=120)
        assert done["status"] == "succeeded", server.log()
        assert done["worker_id"].endswith(f"-{pid}"), "run by the runner process"
        numbers = stored_numbers(server, small["id"])
        assert len(numbers) == len(set(numbers)) == done["trials_done"] > 0

        # Kill the runner mid-job: the API restarts it and the job still completes.
        long = server.submit(sampled(240))
        until("24 trials", lambda: job(server, long["id"])["trials_done"] >= 24, 120, server.log())
        os.kill(pid, signal.SIGKILL)
        restarted = until(
            "runner restart",
            lambda: (h := health(server)["runner"])["restarts"] >= 1 and h["alive"] and h,
            30,
            server.log(),
        )
        assert restarted["last_exit_code"] == -signal.SIGKILL
        assert restarted["pid"] != pid
        final = server.wait(long["id"], timeout_s=300)
        assert final["status"] == "succeeded", server.log()
        assert final["worker_id"].endswith(f"-{restarted['pid']}")
        numbers = stored_numbers(server, long["id"])
        assert numbers == list(range(240)) and final["trials_done"] == 240, "each trial once"

        # Cancel through the API: the flag in the database reaches the runner process.
        endless = server.submit(sampled(20000))
        until("running", lambda: job(server, endless["id"])["trials_done"] > 0, 120, server.log())
        resp = httpx.post(f"{server.url}/v1/jobs/{endless['id']}/cancel", timeout=30)
        assert resp.status_code == 200
        cancelled = server.wait(endless["id"], timeout_s=30)
        assert cancelled["status"] == "cancelled" and cancelled["trials_done"] < 20000
    finally:
        stop_server(server)


def test_the_runner_stops_with_the_server_and_gives_its_job_back(tmp_path: Path) -> None:
    db = tmp_path / "paretune.db"
    server = start_server(tmp_path, executor="local")
    endless = server.submit(sampled(20000))  # wakes a runner that may still be starting
    try:
        until("running", lambda: job(server, endless["id"])["trials_done"] > 0, 120, server.log())
        runner = health(server)["runner"]
        assert runner["restarts"] == 0, "the early wake-up did not kill the starting runner"
        pid = runner["pid"]
    finally:
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(60)
    # uvicorn shuts down gracefully, then exits by the signal it caught (-15)
    assert code in (0, -signal.SIGTERM) and "Finished server process" in server.log(), code
    assert until("runner exit", lambda: gone(pid), 30, server.log())
    status, trials_done, worker = db_job(db, endless["id"])
    assert (status, worker) == ("queued", None) and trials_done > 0, "back in the queue"
    assert "released to the queue" in server.log()

    # The API killed outright: its runner sees its standard input end and stops too.
    again = start_server(tmp_path, executor="local")
    try:
        until("resumed", lambda: job(again, endless["id"])["status"] == "running", 60, again.log())
        pid = health(again)["runner"]["pid"]
    finally:
        again.process.send_signal(signal.SIGKILL)
        again.process.wait(10)
    assert until("orphaned runner exit", lambda: gone(pid), 60, again.log())
    status, resumed_trials, worker = db_job(db, endless["id"])
    assert (status, worker) == ("queued", None) and resumed_trials >= trials_done


def test_workers_started_apart_serve_an_api_without_a_runner(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'paretune.db'}"
    server = start_server(tmp_path, executor="local", extra_args=["--runner", "none"])
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "worker", "--db", db_url, "--executor", "local"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    try:
        assert health(server) == {"status": "ok", "runner": {"mode": "none", "alive": None}}
        small = server.submit(SMALL_SPEC)
        done = server.wait(small["id"], timeout_s=120)
        worker_log = (tmp_path / "worker.log").read_text()
        assert done["status"] == "succeeded", worker_log
        assert done["worker_id"].endswith(f"-{worker.pid}")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, (tmp_path / "worker.log").read_text()
        log.close()
        stop_server(server)


def test_the_runner_process_gets_the_servers_allow_list_verbatim() -> None:
    """The supervised runner runs exactly the server's templates (quotes, braces and '='
    included): it claims the command jobs this server admits, and no others."""
    from tuner.command_allowlist import templates_from_options

    templates = {
        "bench": "python /opt/bench.py --tp {tp} --name 'a b=c'",
        "show": "/usr/bin/env echo {model_name}",
    }
    settings = Settings(allow_command_evaluator=True, command_templates=templates)
    cmd = worker_command(settings)
    given = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--command-template"]
    assert templates_from_options(given, None) == templates
    assert "--command-template" not in worker_command(Settings())
