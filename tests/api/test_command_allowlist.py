"""A real `paretune serve` with allow-listed command templates runs only those: a job names a
template (or spells out exactly its command) and runs; any other command, an unknown name, a
job's own env or workdir, and a free-text value that is not a plain token are refused with a
422 naming the field and the fix. Without templates, command jobs are refused."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import LiveServer
from tests.api.conftest import start_server
from tests.api.conftest import stop_server
from tests.api.test_command_evaluator_api import SCRIPT
from tests.api.test_command_evaluator_api import SPEC

BENCH = f"{sys.executable} -c '{SCRIPT}' {{micro_batch_size}}"
SHOW_MODEL = (
    f"{sys.executable} -c 'import json; print(json.dumps(dict(tokens_per_s_per_gpu=1.0, "
    "memory_per_gpu_gib=0.5)))' {model_name}"
)


def command_job(**evaluator: Any) -> dict[str, Any]:
    return {**SPEC, "evaluator": {"type": "command", "timeout_s": 60, **evaluator}}


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    args = ["--command-template", f"bench={BENCH}", "--command-template", f"show={SHOW_MODEL}"]
    server = start_server(tmp_path_factory.mktemp("listed"), executor="local", extra_args=args)
    yield server
    stop_server(server)


def post(server: LiveServer, spec: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/jobs", json=spec, timeout=60)


def refused(resp: httpx.Response) -> dict[str, str]:
    """Field -> message of a 422."""
    assert resp.status_code == 422, resp.text
    return {item["field"]: item["msg"] for item in resp.json()["detail"]}


def test_a_named_template_runs_with_the_servers_command(listed: LiveServer) -> None:
    job = listed.submit(command_job(template="bench"))
    assert job["spec"]["evaluator"]["command"] == BENCH
    done = listed.wait(job["id"])
    assert done["status"] == "succeeded", done
    trials = httpx.get(f"{listed.url}/v1/jobs/{job['id']}/trials", timeout=30).json()["items"]
    assert {t["metrics"]["tokens_per_s_per_gpu"] for t in trials} == {100.0, 200.0}


def test_the_exact_template_text_is_accepted_and_named(listed: LiveServer) -> None:
    job = listed.submit(command_job(command=BENCH))
    assert job["spec"]["evaluator"]["template"] == "bench"
    assert listed.wait(job["id"])["status"] == "succeeded"


def test_commands_not_on_the_list_are_refused(listed: LiveServer) -> None:
    other = refused(post(listed, command_job(command=f"{BENCH} --and-more")))
    assert list(other) == ["evaluator.command"]
    assert "evaluator.template" in other["evaluator.command"]
    assert "bench, show" in other["evaluator.command"]
    mismatch = refused(post(listed, command_job(template="bench", command="sh -c id")))
    assert list(mismatch) == ["evaluator.command"]
    unknown = refused(post(listed, command_job(template="rm-everything")))
    assert list(unknown) == ["evaluator.template"]
    assert "bench, show" in unknown["evaluator.template"]


def test_a_jobs_own_environment_and_directory_are_refused(listed: LiveServer) -> None:
    env = refused(post(listed, command_job(template="bench", env={"LD_PRELOAD": "/tmp/x.so"})))
    assert list(env) == ["evaluator.env"]
    workdir = refused(post(listed, command_job(template="bench", workdir="/tmp")))
    assert list(workdir) == ["evaluator.workdir"]


@pytest.mark.parametrize("name", ["tiny; rm -rf ~", "$(id)", "--output=/etc/passwd", "a b"])
def test_free_text_values_must_be_plain_tokens(listed: LiveServer, name: str) -> None:
    spec = command_job(template="show")
    spec["model"] = {**SPEC["model"], "name": name}
    errors = refused(post(listed, spec))
    assert list(errors) == ["model.name"]
    assert "plain tokens" in errors["model.name"]
    spec["model"] = {**SPEC["model"], "name": "tiny-1.5b_v2"}
    assert post(listed, spec).status_code == 202


def test_without_templates_command_jobs_are_refused(tmp_path: Path) -> None:
    server = start_server(tmp_path, executor="local")
    try:
        errors = refused(post(server, command_job(command=BENCH)))
        assert list(errors) == ["evaluator.type"]
        assert "--command-template" in errors["evaluator.type"]
    finally:
        stop_server(server)
