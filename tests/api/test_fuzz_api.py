"""Schemathesis against the OpenAPI schema of a running `paretune serve` process.

The `st` command runs every phase (schema examples, coverage of boundaries, random fuzzing,
stateful sequences that reuse the ids the server returns) over every operation, valid and
invalid requests alike, and checks every answer: no 5xx, every status documented, every body
and header as the schema says, invalid input refused, missing or bad tokens refused (the
server requires tokens, as it does beyond loopback). Positive-data acceptance is not checked
where the server validates more than a JSON schema can say (a job spec must describe a
space with a valid point; launch formats depend on the job's kind).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.tokens import TokenRepository
from tests.api.conftest import SMALL_SPEC
from tests.api.conftest import start_server
from tests.api.conftest import stop_server

pytestmark = pytest.mark.slow
ST = Path(sys.executable).with_name("st")
MIN_CASES = 2000
CONFIG = """
headers = { Authorization = "Bearer ${PARETUNE_FUZZ_TOKEN}" }
generation.max-examples = 200
request-timeout = 30.0
phases.stateful.generation.max-examples = 40

[[operations]]
include-path = ["/v1/jobs", "/v1/jobs/{job_id}/copy", "/v1/estimate"]
include-method = "POST"
checks.positive_data_acceptance.enabled = false

[[operations]]
include-path = "/v1/jobs/{job_id}/recommendation"
checks.positive_data_acceptance.enabled = false
"""


def make_token(db_url: str) -> str:
    engine = make_engine(db_url)
    upgrade_to_head(engine)
    with session_scope(make_session_factory(engine)) as session:
        token, _ = TokenRepository(session).create("fuzz")
    engine.dispose()
    return token


def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'paretune.db'}"
    token = make_token(db_url)
    limits = {"PARETUNE_MAX_QUEUED_JOBS": "3"}
    server = start_server(
        tmp_path, "local", db_url, extra_env=limits, extra_args=["--require-tokens"]
    )
    try:
        auth = {"Authorization": f"Bearer {token}"}
        resp = httpx.post(f"{server.url}/v1/jobs", json=SMALL_SPEC, headers=auth, timeout=60)
        assert resp.status_code == 202, resp.text
        assert server.wait(resp.json()["id"])["status"] == "succeeded"
        (tmp_path / "schemathesis.toml").write_text(CONFIG)
        seed = os.environ.get("PARETUNE_FUZZ_SEED", "20261122")
        cmd = [str(ST), "--config-file", "schemathesis.toml", "run", f"{server.url}/openapi.json"]
        cmd += ["--workers", "2", "--seed", seed, "--no-color"]
        env = {**os.environ, "PARETUNE_FUZZ_TOKEN": token}
        run = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        report = run.stdout + run.stderr
        (tmp_path / "schemathesis.out").write_text(report)
        assert run.returncode == 0, report[-12000:]
        generated = re.search(r"(\d+) generated", report)
        assert generated and int(generated.group(1)) >= MIN_CASES, report[-3000:]
        log = server.log_path.read_text()
        assert "Traceback" not in log, log[-5000:]
        assert token not in log, "the API token appeared in the server log"
    finally:
        stop_server(server)
