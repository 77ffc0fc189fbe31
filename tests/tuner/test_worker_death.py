"""Fault injection on a real local Ray cluster: the Ray worker running a trial is killed in
the middle of it. Ray retries the trial on a new worker (it then completes); when every retry
is killed too, the trial fails with the cause, and the job still completes.

The slow trial is the ``command`` evaluator running ``fault_trial.py``, which kills its own
parent (the Ray worker) for one configuration: deterministic, and it can only hit a Ray
worker of this test's cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import RayExecutor
from tuner.driver import ListSink
from tuner.driver import run_search

pytestmark = [pytest.mark.ray, pytest.mark.slow]
SCRIPT = Path(__file__).with_name("fault_trial.py")
PINNED = {
    "pp": [1],
    "cp": [1],
    "ep": [1],
    "vpp": [1],
    "micro_batch_size": [1],
    "sharding": ["zero1"],
    "recompute": ["full"],
    "sequence_parallel": [False],
    "dtype": ["bf16"],
}


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RayExecutor]:
    yield RayExecutor()  # one local cluster per process; Ray shuts it down at exit


def spec_with(state: Path, kill: str) -> Any:
    command = f"{sys.executable} {SCRIPT} --tp {{tp}} --state-dir {state} --kill {kill} "
    return parse_job_spec(
        {
            "model": "llama-3.1-8b",
            "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
            "workload": {"seq_len": 4096, "global_batch_size": 256},
            "space": {"tp": [1, 2, 4], **PINNED},
            "evaluator": {"type": "command", "command": command + "--victim-tp 2", "timeout_s": 60},
        }
    )


def runs(state: Path) -> list[tuple[int, int]]:
    lines = (state / "runs.log").read_text().split("\n")
    return [(int(tp), int(pid)) for tp, pid in (line.split() for line in lines if line)]


def test_a_killed_worker_is_retried_and_the_trial_completes(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    result = run_search(spec_with(tmp_path, "first"), ray_executor, ListSink())
    by_tp = {t.config["tp"]: t for t in result.trials}
    assert sorted(by_tp) == [1, 2, 4]
    assert all(t.state == "complete" for t in result.trials), [t.error for t in result.trials]
    assert by_tp[2].metrics["tokens_per_s_per_gpu"] == 2000.0
    victim_runs = [pid for tp, pid in runs(tmp_path) if tp == 2]
    assert len(victim_runs) == 2 and victim_runs[0] != victim_runs[1], "retried on a new worker"
    assert result.recommendation is not None


def test_a_trial_whose_retries_all_die_fails_with_its_cause(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    result = run_search(spec_with(tmp_path, "always"), ray_executor, ListSink())
    by_tp = {t.config["tp"]: t for t in result.trials}
    assert sorted(by_tp) == [1, 2, 4], "the job completes"
    failed = by_tp.pop(2)
    assert failed.state == "failed" and failed.error is not None
    assert "worker" in failed.error and "died" in failed.error, failed.error
    assert all(t.state == "complete" for t in by_tp.values())
    assert len([tp for tp, _ in runs(tmp_path) if tp == 2]) >= 2, "Ray retried before failing"
    assert result.recommendation is not None and result.recommendation.config["tp"] == 4
