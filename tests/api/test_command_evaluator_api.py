"""The command evaluator runs programs: the server refuses such jobs (422, with the field and
how to enable it) unless its settings allow them; then allow-listed templates run like any job
(the allow-list itself over a real server: test_command_allowlist.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings

PINNED: dict[str, Any] = {"sharding": ["zero1"], "sequence_parallel": [False]}

SCRIPT = (
    "import json, sys; mb = int(sys.argv[1]); "
    "print(json.dumps(dict(tokens_per_s_per_gpu=100.0 * mb, memory_per_gpu_gib=0.5)))"
)
SPEC: dict[str, Any] = {
    "model": {
        "name": "tiny",
        "num_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "vocab_size": 1024,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 2},
    "workload": {"seq_len": 64, "global_batch_size": 8},
    "space": {"micro_batch_size": [1, 2], "tp": [1], "recompute": ["none"], **PINNED},
    "evaluator": {
        "type": "command",
        "command": f"{sys.executable} -c '{SCRIPT}' {{micro_batch_size}}",
        "timeout_s": 60,
    },
}


def make_client(tmp_path: Path, allow: bool) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        executor="local",
        poll_interval_s=0.1,
        allow_command_evaluator=allow,
        command_templates={"bench": SPEC["evaluator"]["command"]} if allow else {},
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path, allow=False)


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[TestClient]:
    yield from make_client(tmp_path, allow=True)


def test_command_jobs_are_refused_by_default(locked: TestClient) -> None:
    resp = locked.post("/v1/jobs", json=SPEC)
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json()["detail"]
    assert detail["field"] == "evaluator.type"
    assert "allow_command_evaluator" in detail["msg"]


def test_allowed_command_jobs_run_and_keep_their_output(open_server: TestClient) -> None:
    resp = open_server.post("/v1/jobs", json=SPEC)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    for _ in range(300):
        job = open_server.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    trials = open_server.get(f"/v1/jobs/{job_id}/trials").json()["items"]
    assert {t["metrics"]["tokens_per_s_per_gpu"] for t in trials} == {100.0, 200.0}
    assert all(t["details"]["command"]["returncode"] == 0 for t in trials)
    assert job["best"]["config"]["micro_batch_size"] == 2
