"""The `paretune` CLI on the example specs: estimate lists, tune, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import REPO_DIR
from tuner.cli import app

EXAMPLES = REPO_DIR / "examples"
runner = CliRunner()


def test_estimate_answers_a_list_in_order() -> None:
    res = runner.invoke(app, ["estimate", str(EXAMPLES / "estimate-list.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [o["name"] for o in out] == [
        "gpt3-175b-sc21",
        "llama-3.1-70b-h100",
        "mixtral-8x7b-h100",
        "inline-architecture",
    ]
    for o in out:
        for key in (
            "tokens_per_s",
            "tokens_per_s_per_gpu",
            "step_time_s",
            "mfu",
            "memory_per_gpu_gib",
            "fits",
            "breakdown",
        ):
            assert key in o, (key, o)
        assert o["tokens_per_s"] > 0 and 0 < o["mfu"] < 1


def test_estimate_keeps_answering_after_an_invalid_spec(tmp_path: Path) -> None:
    specs = [
        {
            "model": "llama-3.1-8b",
            "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
            "workload": {"seq_len": 4096, "global_batch_size": 64},
            "config": {"tp": 3},
        },
        {
            "model": "llama-3.1-8b",
            "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
            "workload": {"seq_len": 4096, "global_batch_size": 64},
            "config": {"tp": 2},
        },
    ]
    path = tmp_path / "specs.json"
    path.write_text(json.dumps(specs))
    res = runner.invoke(app, ["estimate", str(path), "--json"])
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert "error" in out[0] and "tp" in out[0]["error"]
    assert "tokens_per_s" in out[1]


def test_bad_field_exits_2_with_one_readable_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model: llama-3.1-8b\ncluster: {gpu: a100-80gb, num_gpus: 0}\n"
        "workload: {seq_len: 2048, global_batch_size: 8}\n"
    )
    res = runner.invoke(app, ["tune", str(path), "--executor", "local"])
    assert res.exit_code == 2
    assert "cluster.num_gpus" in res.output
    assert "Traceback" not in res.output


def test_unknown_model_lists_closest_ids(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model: llama-3-70b\ncluster: {gpu: a100-80gb, num_gpus: 8}\n"
        "workload: {seq_len: 2048, global_batch_size: 8}\n"
    )
    res = runner.invoke(app, ["tune", str(path), "--executor", "local"])
    assert res.exit_code == 2
    assert "llama-3.1-70b" in res.output


def test_missing_file_is_a_clear_error() -> None:
    res = runner.invoke(app, ["estimate", "/nonexistent/spec.yaml"])
    assert res.exit_code == 2
    assert "cannot read spec file" in res.output


def test_tune_prints_front_and_writes_launch_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "tune",
            str(EXAMPLES / "small-local.yaml"),
            "--executor",
            "local",
            "--db",
            f"sqlite:///{tmp_path / 'cli.db'}",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and "recommended" in res.output
    assert (out / "launch_megatron.sh").read_text().count("--tensor-model-parallel-size") == 1
    front = json.loads((out / "front.json").read_text())
    assert front and all(p["feasible"] for p in front)


def test_serve_refuses_an_unknown_http_stack_naming_the_option() -> None:
    res = runner.invoke(app, ["serve", "--http", "bogus"])
    assert res.exit_code != 0
    assert "--http must be one of auto, h11" in res.output
