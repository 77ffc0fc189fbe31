"""Security properties of the service: tokens hashed, compared in constant time and never
logged; the REST API never reads a server file a client names; the command evaluator off
unless the operator allows it; limits on trial budget, space size and queued jobs, each
refused with an error that names the limit. (Write access beyond loopback, CORS: see
test_access.py; body size: test_routes.py.)"""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import results.tokens as tokens_module
from api.main import create_app
from api.settings import Settings
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.tokens import TokenRepository
from tests.api.conftest import SMALL_SPEC
from tests.api.conftest import start_server
from tests.api.conftest import stop_server
from tests.tuner.test_worker_death import PINNED

HF_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'security.db'}"
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    return url


def make_token(db_url: str) -> str:
    engine = make_engine(db_url)
    with session_scope(make_session_factory(engine)) as session:
        token, _ = TokenRepository(session).create("security")
    engine.dispose()
    return token


def client_for(db_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(database_url=db_url, executor="local", **settings)))


def fields(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    return [item["field"] for item in resp.json()["detail"]]


def test_tokens_are_compared_in_constant_time(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(db_url)
    compared: list[tuple[str, str]] = []
    real = tokens_module.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", spy)
    engine = make_engine(db_url)
    with session_scope(make_session_factory(engine)) as session:
        repo = TokenRepository(session)
        assert repo.verify(token)
        assert not repo.verify(token + "x")
    engine.dispose()
    digest = tokens_module.hash_token(token)
    assert compared == [(digest, digest)], "the stored hash is compared with compare_digest"
    assert token not in digest


@pytest.mark.slow
def test_tokens_never_reach_the_server_log(tmp_path: Path, db_url: str) -> None:
    token = make_token(db_url)
    wrong = "pt_" + "w" * 43
    server = start_server(tmp_path, "local", db_url, extra_args=["--require-tokens"])
    try:
        good = {"Authorization": f"Bearer {token}"}
        job = httpx.post(f"{server.url}/v1/jobs", json=SMALL_SPEC, headers=good, timeout=60)
        assert job.status_code == 202, job.text
        bad = {"Authorization": f"Bearer {wrong}"}
        assert httpx.post(f"{server.url}/v1/jobs", json=SMALL_SPEC, headers=bad).status_code == 401
        job_id = job.json()["id"]
        assert httpx.post(f"{server.url}/v1/jobs/{job_id}/cancel", headers=good).status_code == 200
        assert httpx.post(f"{server.url}/v1/jobs/{job_id}/cancel").status_code == 401
        server.wait(job_id)
    finally:
        stop_server(server)
    log = server.log_path.read_text()
    assert f"/v1/jobs/{job_id}/cancel" in log, "the access log was written"
    assert token not in log and wrong not in log
    assert token[3:12] not in log, "not even a piece of the token"


@pytest.fixture
def guard_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """Records every file the process opens by a path under ``tmp_path``."""
    opened: list[str] = []
    real_open = builtins.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(tmp_path) in str(file):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    yield opened


def test_the_api_never_reads_a_file_a_client_names(
    db_url: str, tmp_path: Path, guard_files: list[str]
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(HF_LLAMA))  # a real, valid config: only the path is refused
    by_path = {**SMALL_SPEC, "model": {"hf_config": str(config)}}
    with client_for(db_url) as client:
        resp = client.post("/v1/jobs", json=by_path)
        assert fields(resp) == ["model"]
        assert "never reads server files" in resp.json()["detail"][0]["msg"]
        assert fields(client.post("/v1/jobs", json={**SMALL_SPEC, "model": str(config)})) == [
            "model"
        ]
        estimate = {**by_path, "config": {"tp": 1}}
        assert client.post("/v1/estimate", json=estimate).status_code == 422
        inline = {**SMALL_SPEC, "model": {"hf_config": HF_LLAMA}}
        assert client.post("/v1/jobs", json=inline).status_code == 202, "content is accepted"
    assert guard_files == [], f"the server opened {guard_files}"


def command_spec() -> dict[str, Any]:
    command = f"{sys.executable} -c print(1)"
    return {**SMALL_SPEC, "evaluator": {"type": "command", "command": command}}


def test_command_evaluator_is_off_unless_allowed(db_url: str) -> None:
    assert Settings().allow_command_evaluator is False
    with client_for(db_url) as client:
        resp = client.post("/v1/jobs", json=command_spec())
        assert fields(resp) == ["evaluator.type"]
        assert "allow_command_evaluator" in resp.json()["detail"][0]["msg"]
    command = command_spec()["evaluator"]["command"]
    allowed = {"allow_command_evaluator": True, "command_templates": {"hello": command}}
    with client_for(db_url, **allowed) as client:
        assert client.post("/v1/jobs", json=command_spec()).status_code == 202


def test_trial_budget_and_space_size_limits_name_the_limit(db_url: str) -> None:
    with client_for(db_url, max_trials_per_job=30) as client:
        sampled = {**SMALL_SPEC, "budget": {"trials": 31, "exhaustive_limit": 0}}
        resp = client.post("/v1/jobs", json=sampled)
        assert fields(resp) == ["budget.trials"]
        assert "max_trials_per_job" in resp.json()["detail"][0]["msg"]
        # SMALL_SPEC's space holds 780 valid points: evaluated exhaustively by default
        resp = client.post("/v1/jobs", json=SMALL_SPEC)
        assert fields(resp) == ["budget.trials", "budget.exhaustive_limit"]
        assert "more than 30 valid points" in resp.json()["detail"][1]["msg"]
        within = {**SMALL_SPEC, "budget": {"trials": 30, "exhaustive_limit": 30}}
        assert client.post("/v1/jobs", json=within).status_code == 202, "sampled within limits"
        small = {**SMALL_SPEC, "space": {"tp": [1, 2, 4], **PINNED}}
        assert client.post("/v1/jobs", json=small).status_code == 202, "3 points: exhaustive"


def test_queued_jobs_limit_answers_429_naming_it(db_url: str) -> None:
    with client_for(db_url, max_queued_jobs=2) as client:
        client.app.state.runner.stop()  # type: ignore[attr-defined]  # jobs stay queued
        for _ in range(2):
            assert client.post("/v1/jobs", json=SMALL_SPEC).status_code == 202
        refused = client.post("/v1/jobs", json=SMALL_SPEC)
        assert refused.status_code == 429
        assert "max_queued_jobs=2" in refused.json()["detail"]
        assert refused.headers["retry-after"]
        job_id = client.get("/v1/jobs").json()["items"][0]["id"]
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        assert client.post("/v1/jobs", json=SMALL_SPEC).status_code == 202, "room again"
