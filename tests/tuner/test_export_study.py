"""export-study: a job's trials open as an Optuna study with the same Pareto front."""

from __future__ import annotations

from pathlib import Path

import optuna
from typer.testing import CliRunner

from search_spaces.job_spec import parse_job_spec
from tests.tuner.test_reuse import SPEC
from tuner.cli import app
from tuner.local_job import run_local_job

# Optuna's RDB storage writes ~40 trials/s here: keep the exported job small.
SMALL = {**SPEC, "space": {**SPEC["space"], "sharding": ["zero1"], "dtype": ["bf16"]}}


def test_export_study_round_trips_the_front(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    job_id, result = run_local_job(SMALL, parse_job_spec(SMALL), db_url=db, executor_kind="local")
    assert 20 <= len(result.trials) <= 200
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    res = CliRunner().invoke(app, ["export-study", job_id, "--storage", storage, "--db", db])
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name=f"paretune-{job_id}", storage=storage)
    assert len(study.trials) == len(result.trials)
    assert study.metric_names == ["tokens_per_s_per_gpu", "memory_per_gpu_gib"]
    optuna_front = {t.user_attrs["paretune_trial_number"] for t in study.best_trials}
    ours = {t.number for t in result.front}
    # Optuna keeps every copy of a duplicated loss vector; ours keeps one per vector.
    assert ours <= optuna_front
    values = {tuple(t.values) for t in study.best_trials}
    assert values == {
        (t.metrics["tokens_per_s_per_gpu"], t.metrics["memory_per_gpu_gib"]) for t in result.front
    }
    again = CliRunner().invoke(app, ["export-study", job_id, "--storage", storage, "--db", db])
    assert again.exit_code == 2 and "already exists" in again.output
