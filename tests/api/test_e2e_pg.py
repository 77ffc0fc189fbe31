"""The service on PostgreSQL: a real server process on a fresh database, a job end to end, and
a restart of the server that keeps every stored job."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.conftest import start_server
from tests.api.conftest import stop_server

pytestmark = pytest.mark.pg


def test_job_on_postgresql_survives_a_server_restart(
    pg_database: str, tmp_path: Path, small_spec: dict
) -> None:
    server = start_server(tmp_path, executor="local", db_url=pg_database)
    try:
        job = server.submit(small_spec)
        done = server.wait(job["id"])
        assert done["status"] == "succeeded", server.log()
        front = httpx.get(f"{server.url}/v1/jobs/{job['id']}/pareto").json()["points"]
        assert front
    finally:
        stop_server(server)
    again = start_server(tmp_path, executor="local", db_url=pg_database)
    try:
        stored = httpx.get(f"{again.url}/v1/jobs/{job['id']}").json()
        assert stored["status"] == "succeeded"
        assert stored["trials_done"] == done["trials_done"]
        assert httpx.get(f"{again.url}/v1/jobs/{job['id']}/pareto").json()["points"] == front
    finally:
        stop_server(again)
