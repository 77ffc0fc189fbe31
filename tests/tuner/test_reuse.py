"""Evaluations are keyed by (model, cluster, workload, knobs, evaluator version): a second job
over the same ground reuses every stored evaluation; other ground evaluates afresh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_spaces.job_spec import parse_job_spec
from tuner.local_job import run_local_job

SPEC: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
    "space": {"tp": [1, 2, 4], "pp": [1, 2], "micro_batch_size": [1, 2]},
}


def run(doc: dict[str, Any], db: str) -> Any:
    return run_local_job(doc, parse_job_spec(doc), db_url=db, executor_kind="local")[1]


def test_second_job_reuses_the_first_jobs_evaluations(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'reuse.db'}"
    first = run(SPEC, db)
    assert not any("reused" in t.details for t in first.trials)
    second = run({**SPEC, "name": "again", "objectives": ["max:mfu"]}, db)
    assert len(second.trials) == len(first.trials)
    assert all("reused" in t.details for t in second.trials)
    by_key = {t.config_key: t.metrics for t in first.trials}
    assert all(by_key[t.config_key] == t.metrics for t in second.trials)
    assert {t.eval_key for t in second.trials} == {t.eval_key for t in first.trials}


def test_other_ground_is_evaluated_afresh(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'reuse.db'}"
    run(SPEC, db)
    other = run({**SPEC, "workload": {"seq_len": 8192, "global_batch_size": 256}}, db)
    assert not any("reused" in t.details for t in other.trials)
    bigger = run({**SPEC, "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 32}}, db)
    assert not any("reused" in t.details for t in bigger.trials)
