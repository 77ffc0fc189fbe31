"""Measuring evaluators end to end on a real local Ray cluster and the results database: a
profile job on this machine's CPU, a hybrid job naming a stored hardware profile, the torchrun
example through the command evaluator, and trials whose worker dies, hangs or cannot be
scheduled ending as failed trials with their cause instead of stalling the job."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cost_models.profiling.hardware_profile import GemmBench
from cost_models.profiling.hardware_profile import HardwareProfile
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tests.conftest import REPO_DIR
from tuner.dispatch import RayExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.evaluation import failed_outcome
from tuner.hardware_profiles import store_profile
from tuner.local_job import run_local_job
from tuner.task_failures import run_ray_tasks

PINNED: dict[str, Any] = {"sharding": ["zero1"], "sequence_parallel": [False]}

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY_256: dict[str, Any] = {
    "model": {
        "name": "tiny-256",
        "num_layers": 2,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "vocab_size": 4096,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 2},
    "workload": {"seq_len": 128, "global_batch_size": 8},
}
PROFILE = {"warmup_steps": 1, "timed_steps": 2, "isolate": False}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayExecutor]:
    """Local Ray, started once from the main thread (shut down with the session)."""
    import ray

    executor = RayExecutor()
    yield executor
    ray.shutdown()


def run_job(doc: dict[str, Any], db: Path) -> tuple[str, Any, list[Any], Any]:
    spec = parse_job_spec(doc)
    job_id, result = run_local_job(doc, spec, db_url=f"sqlite:///{db}", executor_kind="ray")
    engine = make_engine(f"sqlite:///{db}")
    with session_scope(make_session_factory(engine)) as session:
        repo = JobRepository(session)
        stored, job = repo.all_trials(job_id), repo.get_job(job_id)
    engine.dispose()
    return job_id, result, stored, job


def test_profile_job_measures_every_trial_on_ray_workers(
    ray_cluster: RayExecutor, tmp_path: Path
) -> None:
    doc = {
        **TINY_256,
        "space": {
            "tp": [1],
            "micro_batch_size": [2, 4],
            "recompute": ["none"],
            "sharding": ["zero1"],
            "sequence_parallel": [False],
        },
        "evaluator": {"type": "profile", **PROFILE},
    }
    _, result, stored, job = run_job(doc, tmp_path / "p.db")
    assert job.status == "succeeded" and len(stored) == result.plan.space_size == 2
    for t in stored:
        assert t.state == "complete", t.error
        assert t.evaluator.startswith("profile@")
        assert t.metrics["step_time_s"] > 0 and t.metrics["memory_per_gpu_gib"] > 0
        assert t.details["profile"]["microbatch_s"] > 0
        assert t.details["measured"] == t.metrics and "step_time_s" in t.details["predicted"]
        assert int(t.details["worker"].rsplit(":", 1)[1]) != os.getpid()
    assert job.best is not None and job.best["trial_number"] in {t.number for t in stored}


def test_hybrid_job_with_a_stored_hardware_profile(
    ray_cluster: RayExecutor, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade_to_head(engine)
    measured = HardwareProfile(
        name="this-cpu",
        device="cpu",
        device_kind="cpu",
        driver_version="test",
        library_versions={},
        host="test",
        threads=1,
        compute_dtype="bfloat16",
        gemm=[GemmBench(m=512, n=512, k=512, dtype="bfloat16", time_s=1e-3, flops_per_s=2.7e11)],
    )
    with session_scope(make_session_factory(engine)) as session:
        store_profile(session, measured, fit=None)
    engine.dispose()
    doc = {
        **TINY_256,
        "space": {"micro_batch_size": [1, 2, 4], "recompute": ["none", "full"]},
        "evaluator": {"type": "hybrid", "top_k": 2, "hardware_profile": "this-cpu", **PROFILE},
    }
    _, result, stored, job = run_job(doc, db)
    profiled = [t for t in stored if t.evaluator.startswith("profile@")]
    assert len(profiled) == 2 and len(stored) == result.plan.space_size + 2
    for t in profiled:
        assert set(t.details["predicted"]) == set(t.details["measured"]) == set(t.metrics)
        assert t.details["calibration"] == "this-cpu"
        assert t.details["prediction_error"]["step_time_s"] == pytest.approx(
            t.details["predicted"]["step_time_s"] / t.metrics["step_time_s"] - 1
        )
    hybrid = job.best["hybrid"]
    assert hybrid["profiled"] == 2 and hybrid["ranked_by"] == "measured"
    assert hybrid["prediction_error"]["step_time_s"]["n"] == 2
    assert job.best["trial_number"] in {t.number for t in profiled}


def test_command_example_runs_under_torchrun(ray_cluster: RayExecutor, tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO_DIR / "examples/command/tiny-torchrun.yaml").read_text())
    doc["space"].update(recompute=["none"], micro_batch_size=[4])  # one launch keeps CI quick
    doc["evaluator"]["workdir"] = str(REPO_DIR)
    _, result, stored, job = run_job(doc, tmp_path / "c.db")
    assert job.status == "succeeded" and len(stored) == 1
    for t in stored:
        assert t.state == "complete", f"{t.error}\n{t.details}"
        assert t.metrics["tokens_per_s_per_gpu"] > 0 and t.metrics["memory_per_gpu_gib"] > 0
        command = t.details["command"]
        assert "torch.distributed.run" in command["argv"] and command["returncode"] == 0
        assert json.loads(command["stdout_tail"].strip().splitlines()[-1])["world_size"] == 2
    assert result.recommendation is not None


def test_command_failures_and_timeouts_become_failed_trials(ray_cluster: RayExecutor) -> None:
    script = (
        "import json, sys, time; mb = int(sys.argv[1]); "
        "time.sleep(60) if mb == 4 else None; sys.exit(7) if mb == 2 else None; "
        "print(json.dumps(dict(tokens_per_s_per_gpu=1.0, memory_per_gpu_gib=0.1)))"
    )
    spec = parse_job_spec(
        {
            **TINY_256,
            "space": {"micro_batch_size": [1, 2, 4], "tp": [1], "recompute": ["none"], **PINNED},
            "evaluator": {
                "type": "command",
                "command": f"{sys.executable} -c '{script}' {{micro_batch_size}}",
                "timeout_s": 2,
            },
        }
    )
    start = time.monotonic()
    result = run_search(spec, ray_cluster, ListSink())
    assert time.monotonic() - start < 60
    by_mb = {t.config["micro_batch_size"]: t for t in result.trials}
    assert by_mb[1].state == "complete"
    assert by_mb[2].state == "failed" and "exit code 7" in (by_mb[2].error or "")
    assert by_mb[4].state == "failed" and "timed out after 2 s" in (by_mb[4].error or "")


def test_gpu_trials_on_a_cluster_without_gpus_fail_at_once(ray_cluster: RayExecutor) -> None:
    if ray_cluster.resources.get("GPU"):
        pytest.skip("this Ray cluster has GPUs")
    spec = parse_job_spec(
        {
            **TINY_256,
            "space": {"micro_batch_size": [1, 2], "tp": [1], "recompute": ["none"], **PINNED},
            "evaluator": {"type": "profile", **PROFILE, "device": "cuda"},
        }
    )
    result = run_search(spec, ray_cluster, ListSink())
    assert result.trials and all(t.state == "failed" for t in result.trials)
    assert all("needs 1 GPU(s) but the Ray cluster has 0" in (t.error or "") for t in result.trials)


def test_dead_and_hung_workers_become_failed_trials(ray_cluster: RayExecutor) -> None:
    import ray

    @ray.remote(num_cpus=1, max_retries=1)
    def trial(_spec: str, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        mode = chunk[0]["mode"]
        if mode == "crash":
            os._exit(1)  # the worker process dies; Ray retries once, then gives up
        if mode == "hang":
            time.sleep(300)
        return [failed_outcome("fine") | {"error": None, "metrics": {"x": 1.0}}]

    chunks = [[{"mode": "ok"}], [{"mode": "crash"}], [{"mode": "hang"}]]
    start = time.monotonic()
    results = dict(run_ray_tasks(trial, "{}", chunks, 3.0, {"num_cpus": 1}, {"CPU": 2}))
    assert time.monotonic() - start < 60
    assert results[0][0]["metrics"] == {"x": 1.0}
    assert "the worker process died" in results[1][0]["error"]
    assert "timed out after 3 s" in results[2][0]["error"]
