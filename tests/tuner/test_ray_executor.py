"""The Ray path for real: a local Ray cluster evaluates a job's trials in worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from search_spaces.job_spec import TrainingJobSpec
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.dispatch import RayExecutor
from tuner.driver import ListSink
from tuner.driver import run_search

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[RayExecutor]:
    import ray

    executor = RayExecutor()
    yield executor
    ray.shutdown()


def test_job_runs_on_ray_workers_and_matches_in_process(ray_executor: RayExecutor) -> None:
    spec = parse_job_spec(
        {
            "model": "mixtral-8x7b",
            "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
            "workload": {"seq_len": 4096, "global_batch_size": 256},
            "space": {"tp": [1, 2, 4], "ep": [1, 2, 4, 8], "micro_batch_size": [1, 2]},
        }
    )
    assert isinstance(spec, TrainingJobSpec)
    assert ray_executor.resources.get("CPU", 0) >= 1
    on_ray = run_search(spec, ray_executor, ListSink())
    local = run_search(spec, LocalExecutor(), ListSink())
    workers = {t.details["worker"] for t in on_ray.trials}
    assert all(int(w.rsplit(":", 1)[1]) != os.getpid() for w in workers)
    by_key = {t.config_key: t.metrics for t in local.trials}
    assert {t.config_key: t.metrics for t in on_ray.trials} == by_key
    assert on_ray.recommendation is not None and local.recommendation is not None
    assert on_ray.recommendation.config == local.recommendation.config
