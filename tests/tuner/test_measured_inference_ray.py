"""Measured serving jobs end to end on a real local Ray cluster and the results database: an
inference job with the ``profile`` evaluator prefills and decodes a tiny model on Ray workers
for every trial, and a hybrid inference job profiles the analytical front's best points and
stores predicted and measured figures side by side with the prediction error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import RayExecutor
from tuner.local_job import run_local_job

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY_SERVING: dict[str, Any] = {
    "kind": "inference",
    "model": {
        "name": "tiny-256",
        "num_layers": 2,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "num_kv_heads": 2,
        "vocab_size": 4096,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 2},
    "workload": {"input_len": 128, "output_len": 32, "concurrency": 4, "tpot_ms": 1000},
    "objectives": ["max:output_tokens_per_s_per_gpu", "min:ttft_ms"],
}
PINNED: dict[str, Any] = {
    "backend": ["vllm"],
    "weight_dtype": ["bf16"],
    "pp": [1],
    "ep": [1],
    "attention_dp": [1],
}
PROFILE = {"warmup_steps": 1, "timed_steps": 2, "isolate": False}
SERVING_METRICS = {"ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu", "memory_per_gpu_gib"}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayExecutor]:
    """Local Ray, started once per process (joined when another module started it)."""
    import ray

    executor = RayExecutor()
    yield executor
    ray.shutdown()


def run_job(doc: dict[str, Any], db: Path) -> tuple[Any, list[Any], Any]:
    spec = parse_job_spec(doc)
    job_id, result = run_local_job(doc, spec, db_url=f"sqlite:///{db}", executor_kind="ray")
    engine = make_engine(f"sqlite:///{db}")
    with session_scope(make_session_factory(engine)) as session:
        repo = JobRepository(session)
        stored, job = repo.all_trials(job_id), repo.get_job(job_id)
    engine.dispose()
    return result, stored, job


def test_inference_profile_job_measures_every_trial_on_ray_workers(
    ray_cluster: RayExecutor, tmp_path: Path
) -> None:
    doc = {
        **TINY_SERVING,
        "space": {**PINNED, "mode": ["aggregated"], "tp": [1, 2], "kv_dtype": ["bf16"]},
        "evaluator": {"type": "profile", **PROFILE},
    }
    result, stored, job = run_job(doc, tmp_path / "p.db")
    assert job.status == "succeeded" and len(stored) == result.plan.space_size == 2
    for t in stored:
        assert t.state == "complete", t.error
        assert t.evaluator.startswith("profile@serving-profile")
        assert set(t.metrics) >= SERVING_METRICS and all(t.metrics[k] > 0 for k in SERVING_METRICS)
        profile = t.details["profile"]
        assert profile["prefill_s"] > 0 and profile["decode_step_s"] > 0
        assert profile["peak_memory_gib"] > 0
        assert t.details["measured"] == t.metrics and set(t.details["predicted"]) == set(t.metrics)
        assert "tpot_slo_excess_ms" in t.details["constraints"]  # the SLO checked on measurement
        assert int(t.details["worker"].rsplit(":", 1)[1]) != os.getpid()
    by_tp = {t.config["tp"]: t for t in stored}
    assert by_tp[2].details["modeled"]["decode_collectives_ms"] > 0  # tp=2: modeled, not run
    assert by_tp[1].details["modeled"]["decode_collectives_ms"] == 0
    assert job.best is not None and job.best["trial_number"] in {t.number for t in stored}


def test_hybrid_inference_job_stores_prediction_and_measurement(
    ray_cluster: RayExecutor, tmp_path: Path
) -> None:
    doc = {
        **TINY_SERVING,
        "space": {**PINNED, "mode": ["aggregated"], "tp": [1, 2], "kv_dtype": ["bf16", "fp8"]},
        "evaluator": {"type": "hybrid", "top_k": 2, **PROFILE},
    }
    result, stored, job = run_job(doc, tmp_path / "h.db")
    profiled = [t for t in stored if t.evaluator.startswith("profile@")]
    assert len(profiled) == 2 and len(stored) == result.plan.space_size + 2
    for t in profiled:
        assert t.state == "complete", t.error
        assert set(t.details["predicted"]) == set(t.details["measured"]) == set(t.metrics)
        source = next(s for s in stored if s.number == t.details["predicted_trial"])
        assert t.details["predicted"] == source.metrics and t.config == source.config
        for metric in ("ttft_ms", "tpot_ms"):
            assert t.details["prediction_error"][metric] == pytest.approx(
                t.details["predicted"][metric] / t.metrics[metric] - 1
            )
    hybrid = job.best["hybrid"]
    assert hybrid["profiled"] == 2 and hybrid["ranked_by"] == "measured"
    for metric in ("output_tokens_per_s_per_gpu", "ttft_ms", "tpot_ms", "memory_per_gpu_gib"):
        assert hybrid["prediction_error"][metric]["n"] == 2
    assert "step_time_s" not in hybrid["prediction_error"]
    assert job.best["trial_number"] in {t.number for t in profiled}
