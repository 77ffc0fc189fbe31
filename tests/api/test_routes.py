"""REST routes in-process (FastAPI's TestClient, real SQLite file, in-process executor):
validation answers 422 with the field, unknown ids 404, pagination, estimate, catalogs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from tests.api.conftest import SMALL_SPEC


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", executor="local", poll_interval_s=0.1
    )
    with TestClient(create_app(settings)) as c:
        yield c


def wait(client: TestClient, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def fields(resp: Any) -> list[str]:
    assert resp.status_code == 422, resp.text
    return [d["field"] for d in resp.json()["detail"]]


def test_catalog_routes_list_every_design_id(client: TestClient) -> None:
    gpus = {g["id"] for g in client.get("/v1/catalog/gpus").json()}
    assert {"a100-80gb", "h100-sxm-80gb", "gb200-nvl72", "mi300x-192gb"} <= gpus
    models = {m["name"] for m in client.get("/v1/catalog/models").json()}
    assert {"gpt3-175b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-v3"} <= models


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 0}}, "cluster.num_gpus"),
        ({"workload": {"seq_len": 4096}}, "workload.global_batch_size"),
        ({"model": "no-such-model"}, "model"),
        ({"objectives": ["max:speed"]}, "objectives"),
        ({"space": {"tp": [3]}}, "space"),
        ({"space": {"warp": [1]}}, "space"),
        ({"limits": {"max_foo": 1}}, "limits"),
        ({"budget": {"trials": 0}}, "budget.trials"),
        ({"bogus_field": 1}, "bogus_field"),
    ],
)
def test_bad_specs_get_422_naming_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    resp = client.post("/v1/jobs", json={**SMALL_SPEC, **change})
    assert any(f.startswith(field) for f in fields(resp)), resp.json()
    assert client.get("/v1/jobs").json()["total"] == 0


def test_unknown_model_suggests_close_ids(client: TestClient) -> None:
    resp = client.post("/v1/jobs", json={**SMALL_SPEC, "model": "llama-3.1-8"})
    assert "llama-3.1-8b" in resp.json()["detail"][0]["msg"]


def test_empty_space_says_which_rule(client: TestClient) -> None:
    resp = client.post("/v1/jobs", json={**SMALL_SPEC, "space": {"tp": [3]}})
    assert "tp_divides_heads" in resp.json()["detail"][0]["msg"]


def test_non_object_bodies_and_unknown_ids(client: TestClient) -> None:
    assert client.post("/v1/jobs", json=[1, 2]).status_code == 422
    assert (
        client.post(
            "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/jobs/nope/trials").status_code == 404
    assert client.get("/v1/jobs/nope/recommendation").status_code == 404


def test_oversized_body_is_refused(client: TestClient) -> None:
    resp = client.post(
        "/v1/jobs", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413


def test_job_lifecycle_and_trial_pages(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=SMALL_SPEC)
    assert job.status_code == 202
    job_id = job.json()["id"]
    done = wait(client, job_id)
    assert done["status"] == "succeeded"
    assert done["search_mode"] == "exhaustive"
    assert done["trials_done"] == done["trials_planned"] == done["space_size"]
    assert done["best"]["config"]["tp"] in (1, 2, 4)

    listed = client.get("/v1/jobs").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == job_id

    page1 = client.get(f"/v1/jobs/{job_id}/trials", params={"limit": 5}).json()
    assert page1["total"] == done["trials_done"] and len(page1["items"]) == 5
    after = client.get(
        f"/v1/jobs/{job_id}/trials", params={"after": page1["items"][-1]["number"], "limit": 5}
    ).json()
    assert after["items"][0]["number"] == page1["items"][-1]["number"] + 1

    by_tps = client.get(
        f"/v1/jobs/{job_id}/trials",
        params={"order_by": "tokens_per_s_per_gpu", "descending": True, "limit": 1000},
    ).json()["items"]
    values = [t["metrics"]["tokens_per_s_per_gpu"] for t in by_tps if t["metrics"]]
    assert values == sorted(values, reverse=True)
    assert fields(client.get(f"/v1/jobs/{job_id}/trials", params={"order_by": "nope"})) == [
        "order_by"
    ]
    assert client.get(f"/v1/jobs/{job_id}/trials", params={"limit": 0}).status_code == 422

    rec = client.get(f"/v1/jobs/{job_id}/recommendation").json()
    assert rec["trial_number"] == done["best"]["trial_number"]
    assert set(rec["launch"]) >= {"megatron", "deepspeed"}
    other = client.get(f"/v1/jobs/{job_id}/recommendation", params={"trial": 0, "format": "yaml"})
    assert other.status_code == 200 and "config:" in other.text
    assert (
        client.get(f"/v1/jobs/{job_id}/recommendation", params={"format": "nope"}).status_code
        == 422
    )


def test_estimate_single_and_list(client: TestClient) -> None:
    spec = {**SMALL_SPEC, "config": {"tp": 2, "pp": 1}}
    del spec["space"]
    one = client.post("/v1/estimate", json=spec)
    assert one.status_code == 200, one.text
    assert one.json()["tokens_per_s_per_gpu"] > 0 and "breakdown" in one.json()
    bad = {**spec, "config": {"tp": 3}}
    many = client.post("/v1/estimate", json=[bad, spec]).json()
    assert "error" in many[0] and "tokens_per_s" in many[1]
    assert fields(client.post("/v1/estimate", json=bad)) == ["config"]


def test_cancel_a_queued_job(client: TestClient) -> None:
    # Occupy the single job slot with a sampled job, then cancel the queued one behind it.
    big = {
        **SMALL_SPEC,
        "space": None,
        "budget": {"trials": 400, "exhaustive_limit": 0, "batch_size": 8},
    }
    first = client.post("/v1/jobs", json=big).json()
    second = client.post("/v1/jobs", json=SMALL_SPEC).json()
    cancelled = client.post(f"/v1/jobs/{second['id']}/cancel").json()
    assert cancelled["status"] in ("cancelled", "running")
    client.post(f"/v1/jobs/{first['id']}/cancel")
    assert wait(client, first["id"])["status"] == "cancelled"
    assert wait(client, second["id"])["status"] == "cancelled"


def test_copy_a_job_with_changes(client: TestClient) -> None:
    first = client.post("/v1/jobs", json=SMALL_SPEC).json()
    wait(client, first["id"])
    copy = client.post(f"/v1/jobs/{first['id']}/copy", json={"cluster": {"num_gpus": 32}})
    assert copy.status_code == 202, copy.text
    body = copy.json()
    assert body["spec"]["cluster"]["num_gpus"] == 32
    assert body["spec"]["cluster"]["gpu"]["id"] == "h100-sxm-80gb"
    assert body["name"].startswith("copy of")
    assert wait(client, body["id"])["status"] == "succeeded"
    same = client.post(f"/v1/jobs/{first['id']}/copy", json={}).json()
    trials = client.get(
        f"/v1/jobs/{wait(client, same['id'])['id']}/trials", params={"limit": 1000}
    ).json()["items"]
    assert trials and all("reused" in t["details"] for t in trials)
    bad = client.post(f"/v1/jobs/{first['id']}/copy", json={"cluster": {"num_gpus": 0}})
    assert bad.status_code == 422
    assert client.post("/v1/jobs/nope/copy", json={}).status_code == 404


def test_yaml_spec_parses_to_json_and_errors_name_the_line(client: TestClient) -> None:
    text = "model: llama-3.1-8b\ncluster: {gpu: h100-sxm-80gb, num_gpus: 8}\n"
    ok = client.post(
        "/v1/specs/parse", content=text, headers={"content-type": "application/x-yaml"}
    )
    assert ok.status_code == 200
    assert ok.json() == {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
    }
    bad = client.post("/v1/specs/parse", content="model: [x\ncluster: 1\n")
    assert bad.status_code == 422 and "line" in bad.json()["detail"][0]["msg"]
    assert client.post("/v1/specs/parse", content="- 1\n- 2\n").status_code == 422
    assert client.post("/v1/specs/parse", content=b"\xff\xfe").status_code == 422
