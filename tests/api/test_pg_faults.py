"""The service on PostgreSQL under faults, with real `paretune serve` processes on a fresh
database each: PostgreSQL restarted in the middle of a job (the server reconnects and nothing
is lost), and several servers sharing one database (no job runs twice)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import SMALL_SPEC
from tests.api.conftest import TERMINAL
from tests.api.conftest import LiveServer
from tests.api.conftest import start_server
from tests.api.conftest import stop_server

pytestmark = [pytest.mark.pg, pytest.mark.slow]
QUICK_SWEEP = {"PARETUNE_HEARTBEAT_S": "0.5", "PARETUNE_STALE_JOB_AFTER_S": "3"}


def get(url: str, **params: Any) -> Any:
    """GET that rides out the seconds when the database (so the server) answers 503."""
    for _ in range(100):
        resp = httpx.get(url, params=params, timeout=30)
        if resp.status_code != 503:
            assert resp.status_code == 200, resp.text
            return resp.json()
        time.sleep(0.2)
    raise AssertionError(f"{url} kept answering 503")


def wait(server: LiveServer, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = get(f"{server.url}/v1/jobs/{job_id}")
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish:\n{server.log()}")


def all_trials(server: LiveServer, job_id: str) -> list[dict[str, Any]]:
    trials: list[dict[str, Any]] = []
    while page := get(
        f"{server.url}/v1/jobs/{job_id}/trials", after=trials[-1]["number"] if trials else -1
    )["items"]:
        trials += page
    return trials


def assert_stored_once(server: LiveServer, job: dict[str, Any], planned: int) -> None:
    trials = all_trials(server, job["id"])
    numbers = [t["number"] for t in trials]
    assert job["status"] == "succeeded", server.log()
    assert numbers == list(range(planned)) and job["trials_done"] == planned
    assert len({t["config_key"] for t in trials}) == planned, "a configuration ran twice"


def restart_postgresql() -> None:
    clusters = os.listdir("/etc/postgresql")
    assert len(clusters) == 1, f"expected one PostgreSQL version, found {clusters}"
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[0], "main", "restart"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def test_postgresql_restart_mid_job_loses_nothing(pg_database: str, tmp_path: Path) -> None:
    if not Path("/etc/postgresql").is_dir() or os.geteuid() != 0:
        pytest.skip("restarting PostgreSQL needs the local cluster and root")
    spec = {**SMALL_SPEC, "space": None, "budget": {"trials": 500, "batch_size": 4}}
    spec["budget"]["exhaustive_limit"] = 0
    server = start_server(tmp_path, executor="local", db_url=pg_database)
    try:
        job = server.submit(spec)
        while (done := get(f"{server.url}/v1/jobs/{job['id']}")["trials_done"]) < 40:
            time.sleep(0.05)
        restart_postgresql()
        after = get(f"{server.url}/v1/jobs/{job['id']}")
        assert after["status"] == "running" and after["trials_done"] < 500, "restart too late"
        final = wait(server, job["id"])
        assert_stored_once(server, final, 500)
        assert done < 500
        assert "database unavailable" in server.log_path.read_text(), "no write was retried"
    finally:
        stop_server(server)


def test_several_servers_never_run_one_job_twice(pg_database: str, tmp_path: Path) -> None:
    servers = []
    try:
        for i in range(3):
            (tmp_path / str(i)).mkdir()
            servers.append(
                start_server(
                    tmp_path / str(i), executor="local", db_url=pg_database, extra_env=QUICK_SWEEP
                )
            )
        spec = {**SMALL_SPEC, "budget": {"trials": 40, "batch_size": 4, "exhaustive_limit": 0}}
        jobs = [servers[i % 3].submit({**spec, "name": f"job {i}"}) for i in range(12)]
        finals = [wait(servers[0], job["id"]) for job in jobs]
        for final in finals:
            assert_stored_once(servers[0], final, 40)
        logs = "".join(s.log_path.read_text() for s in servers)
        claims = re.findall(r"job ([0-9a-f]{32}) claimed by (\S+)", logs)
        by_job = {job_id: [w for j, w in claims if j == job_id] for job_id, _ in claims}
        assert sorted(by_job) == sorted(job["id"] for job in jobs)
        assert all(len(workers) == 1 for workers in by_job.values()), by_job
        assert {f["worker_id"] for f in finals} == {w[0] for w in by_job.values()}
        assert len({f["worker_id"] for f in finals}) >= 2, "one server ran every job"
    finally:
        for server in servers:
            stop_server(server)
