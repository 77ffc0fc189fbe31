"""End to end over HTTP: a real server process, local Ray, SQLite; a job from spec to front."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.conftest import LiveServer
from tuner.pareto import dominates


def _losses(metrics: dict[str, float], objectives: list[dict[str, str]]) -> list[float]:
    return [
        -metrics[o["metric"]] if o["direction"] == "max" else metrics[o["metric"]]
        for o in objectives
    ]


def _all_trials(url: str, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = -1
    while True:
        page = httpx.get(f"{url}/v1/jobs/{job_id}/trials", params={"after": after, "limit": 1000})
        assert page.status_code == 200, page.text
        batch = page.json()["items"]
        if not batch:
            return items
        items += batch
        after = batch[-1]["number"]


def test_job_from_spec_to_recommendation(live_server: LiveServer, small_spec: dict) -> None:
    job = live_server.submit(small_spec)
    assert job["status"] in ("queued", "running")
    done = live_server.wait(job["id"])
    assert done["status"] == "succeeded", (done, live_server.log())
    url = live_server.url

    trials = _all_trials(url, job["id"])
    assert len(trials) == done["trials_done"] > 0
    assert len({t["number"] for t in trials}) == len(trials), "no trial stored twice"

    pareto = httpx.get(f"{url}/v1/jobs/{job['id']}/pareto").json()
    objectives = pareto["objectives"]
    assert [o["metric"] for o in objectives] == ["tokens_per_s_per_gpu", "memory_per_gpu_gib"]
    points = pareto["points"]
    assert points, "a feasible front"
    feasible = [t for t in trials if t["state"] == "complete" and t["feasible"]]
    for p in points:
        lp = _losses(p["metrics"], objectives)
        for t in feasible:
            assert not dominates(_losses(t["metrics"], objectives), lp), (p, t)

    rec = httpx.get(f"{url}/v1/jobs/{job['id']}/recommendation")
    assert rec.status_code == 200, rec.text
    body = rec.json()
    chosen = next(t for t in trials if t["number"] == body["trial_number"])
    gpu = httpx.get(f"{url}/v1/catalog/gpus").json()
    capacity = next(g for g in gpu if g["id"] == "h100-sxm-80gb")["memory_gib"]
    assert chosen["feasible"] and chosen["metrics"]["memory_per_gpu_gib"] <= capacity
    assert body["trial_number"] in {p["trial_number"] for p in points}
    assert "--tensor-model-parallel-size" in body["launch"]["megatron"]
    best_tps = max(p["metrics"]["tokens_per_s_per_gpu"] for p in points)
    assert body["metrics"]["tokens_per_s_per_gpu"] == best_tps
    text = httpx.get(f"{url}/v1/jobs/{job['id']}/recommendation", params={"format": "megatron"})
    assert text.status_code == 200 and text.text.startswith("#!/usr/bin/env bash")


def test_bad_spec_gets_422_with_field_and_server_survives(live_server: LiveServer) -> None:
    bad = {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100", "num_gpus": 8},
        "workload": {"seq_len": 4096, "global_batch_size": 64},
    }
    resp = httpx.post(f"{live_server.url}/v1/jobs", json=bad)
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert detail[0]["loc"][:3] == ["body", "cluster", "gpu"]
    assert "h100-sxm-80gb" in detail[0]["msg"]
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200


def test_events_stream_progress_until_the_end(live_server: LiveServer, small_spec: dict) -> None:
    from tuner.cli import iter_sse

    job = live_server.submit({**small_spec, "name": "events"})
    events = []
    with httpx.stream(
        "GET", f"{live_server.url}/v1/jobs/{job['id']}/events", timeout=httpx.Timeout(60)
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for event, data in iter_sse(resp.iter_lines()):
            events.append((event, data))
            if event == "end":
                break
    progress = [json.loads(d) for e, d in events if e == "progress"]
    assert progress and progress[-1]["status"] == "succeeded"
    done = [p["trials_done"] for p in progress]
    assert done == sorted(done), "counters only grow"
    assert events[-1][0] == "end"
    assert httpx.get(f"{live_server.url}/v1/jobs/nope/events").status_code == 404


def test_submit_follow_shows_the_result(live_server: LiveServer, tmp_path) -> None:
    import yaml
    from typer.testing import CliRunner

    from tests.api.conftest import SMALL_SPEC
    from tuner.cli import app

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SMALL_SPEC, "name": "follow"}))
    res = CliRunner().invoke(app, ["submit", str(path), "--url", live_server.url, "--follow"])
    assert res.exit_code == 0, res.output
    assert "recommended" in res.output
