"""A real `paretune serve` process on a free port, with a fresh SQLite database and local Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

TERMINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(f"{self.url}/v1/jobs", json=spec, timeout=60)
        assert resp.status_code == 202, resp.text
        job: dict[str, Any] = resp.json()
        return job

    def wait(self, job_id: str, timeout_s: float = 240.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job: dict[str, Any] = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=30).json()
            if job["status"] in TERMINAL:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()[-5000:]


def start_server(
    tmp: Path,
    executor: str = "ray",
    db_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> LiveServer:
    port = free_port()
    db_url = db_url or f"sqlite:///{tmp / 'paretune.db'}"
    log_path = tmp / f"server-{port}.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(extra_env or {})}
    cmd = [
        sys.executable,
        "-m",
        "tuner.cli",
        "serve",
        "--port",
        str(port),
        "--db",
        db_url,
        "--executor",
        executor,
        *(extra_args or []),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = LiveServer(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            # Ours only once uvicorn says it bound the port: another process that already
            # listens there would answer /healthz too (our server then exits, port in use).
            healthy = httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
            if healthy and f"running on {server.url}" in log_path.read_text():
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"server did not answer in 60 s:\n{server.log()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the session: local Ray really started, embedded SQLite."""
    server = start_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_server(server)


SMALL_SPEC: dict[str, Any] = {
    "name": "llama-3.1-8b small",
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
    "space": {
        "tp": [1, 2, 4],
        "pp": [1, 2],
        "micro_batch_size": [1, 2],
        "recompute": ["none", "selective", "full"],
    },
}


@pytest.fixture
def small_spec() -> dict[str, Any]:
    return {**SMALL_SPEC}


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own for this test, dropped afterwards."""
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    name = f"paretune_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A session factory on a freshly migrated database, once per backend (PostgreSQL in a
    database of its own, skipped with the reason when no server answers)."""
    from results.db import make_engine
    from results.db import make_session_factory
    from results.db import upgrade_to_head

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    engine = make_engine(url)
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()
