"""`paretune estimate --explain`: the terms add up to the step time (TPOT) and the memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO_DIR
from tuner.cli import app

EXAMPLES = REPO_DIR / "examples"
runner = CliRunner()
STEP_TERMS = {
    "compute.attention_gemms",
    "compute.mlp_gemms",
    "compute.attention_core",
    "compute.elementwise",
    "compute.logits_and_loss",
    "compute.moe_dispatch",
    "compute.recompute",
    "comm.tensor_parallel",
    "comm.context_parallel",
    "comm.expert_all_to_all",
    "comm.pipeline_p2p",
    "pipeline_bubble",
    "comm.data_parallel_exposed",
    "optimizer",
}


def _spec_with_config(tmp_path: Path, example: str, config: dict[str, Any]) -> Path:
    """The example spec with a fixed ``config`` (the examples leave it to the search)."""
    spec = yaml.safe_load((EXAMPLES / example).read_text())
    spec["config"] = config
    path = tmp_path / example
    path.write_text(yaml.safe_dump(spec))
    return path


def _explain_json(path: Path) -> dict[str, Any]:
    res = runner.invoke(app, ["estimate", str(path), "--explain", "--json"])
    assert res.exit_code == 0, res.output
    (out,) = json.loads(res.stdout)
    assert "error" not in out, out
    return out


def _section(out: dict[str, Any], title: str) -> dict[str, Any]:
    return next(s for s in out["explain"] if s["title"] == title)


def _rows(section: dict[str, Any]) -> dict[str, float]:
    return {r["term"]: r["value"] for r in section["rows"]}


def _check_training(out: dict[str, Any]) -> dict[str, float]:
    step = _rows(_section(out, "step time"))
    assert set(step) == STEP_TERMS
    assert all(v >= 0 for v in step.values())
    assert sum(step.values()) == pytest.approx(out["step_time_s"], rel=1e-9)
    compute = sum(v for k, v in step.items() if k.startswith("compute."))
    assert compute == pytest.approx(out["breakdown"]["compute"], rel=1e-9)
    memory_section = _section(out, "memory per GPU")
    memory = _rows(memory_section)
    assert sum(memory.values()) == pytest.approx(out["memory_per_gpu_gib"], rel=1e-9)
    assert memory_section["facts"]["binding_term"] == max(memory, key=lambda k: memory[k])
    dp = _rows(_section(out, "data-parallel collectives before overlap"))
    total = dp["dp.gradient_reduce"] + dp["dp.parameter_gather"]
    assert dp["dp.exposed"] == pytest.approx(step["comm.data_parallel_exposed"])
    if dp["dp.exposed"] <= total:
        assert dp["dp.hidden"] + dp["dp.exposed"] == pytest.approx(total, rel=1e-9)
    return step


@pytest.mark.parametrize(
    "config",
    [
        {"tp": 8, "pp": 16, "micro_batch_size": 1, "recompute": "full"},  # SC'21-like PTD-P
        {"tp": 8, "pp": 4, "vpp": 2, "sharding": "zero1", "recompute": "selective"},
        {"tp": 8, "pp": 1, "sharding": "zero3", "recompute": "full"},
    ],
)
def test_gpt3_terms_add_up(tmp_path: Path, config: dict[str, Any]) -> None:
    out = _explain_json(_spec_with_config(tmp_path, "gpt3-175b-a100.yaml", config))
    step = _check_training(out)
    assert step["comm.tensor_parallel"] > 0
    assert (step["pipeline_bubble"] > 0) == (config["pp"] > 1)
    assert step["compute.mlp_gemms"] > step["compute.attention_gemms"] > 0  # f = 4h
    assert step["compute.moe_dispatch"] == 0 and step["comm.expert_all_to_all"] == 0
    dp = _rows(_section(out, "data-parallel collectives before overlap"))
    if config.get("sharding") == "zero3":  # 2 gathers per micro-batch vs 1 per step
        assert dp["dp.parameter_gather"] > dp["dp.gradient_reduce"]


def test_moe_example_explains_expert_terms(tmp_path: Path) -> None:
    config = {"tp": 2, "ep": 4, "micro_batch_size": 1, "recompute": "selective"}
    out = _explain_json(_spec_with_config(tmp_path, "mixtral-8x7b-h100.yaml", config))
    step = _check_training(out)
    assert step["comm.expert_all_to_all"] > 0 and step["compute.moe_dispatch"] > 0
    assert step["compute.recompute"] > 0  # selective: the attention core again


def test_inference_terms_add_up_to_tpot_and_memory() -> None:
    out = _explain_json(EXAMPLES / "llama-3.1-70b-h200-serving.yaml")
    tpot = _section(out, "time per output token (TPOT)")
    assert sum(_rows(tpot).values()) == pytest.approx(out["tpot_ms"], rel=1e-4)
    prefill = _section(out, "one prefill")
    assert sum(_rows(prefill).values()) == pytest.approx(prefill["total"], rel=1e-9)
    assert prefill["total"] <= out["ttft_ms"]
    memory = _section(out, "memory per GPU")
    assert sum(_rows(memory).values()) == pytest.approx(out["memory_per_gpu_gib"], rel=1e-3)


def test_tables_print_every_section(tmp_path: Path) -> None:
    path = _spec_with_config(tmp_path, "gpt3-175b-a100.yaml", {"tp": 8, "pp": 16})
    res = runner.invoke(app, ["estimate", str(path), "--explain"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in ("step time", "memory per GPU", "data-parallel collectives", "binding_term"):
        assert text in res.stdout
    for term in STEP_TERMS:
        assert term in res.stdout
    plain = runner.invoke(app, ["estimate", str(path)], env={"COLUMNS": "200"})
    assert "compute.attention_gemms" not in plain.stdout  # only with --explain


def test_explain_of_an_invalid_config_is_an_error_not_a_table(tmp_path: Path) -> None:
    path = _spec_with_config(tmp_path, "gpt3-175b-a100.yaml", {"tp": 3})
    res = runner.invoke(app, ["estimate", str(path), "--explain", "--json"])
    assert res.exit_code == 2
    (out,) = json.loads(res.stdout)
    assert "error" in out and "explain" not in out
