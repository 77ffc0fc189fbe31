"""The allow-list's parts without a server: settings fail fast on a half-configured
allow-list, template files and options are checked, and a local run stays unrestricted but
says what to do with a server-only template name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from api.settings import Settings
from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.job_spec import parse_job_spec
from tuner.cli import app
from tuner.command_allowlist import TemplateError
from tuner.command_allowlist import load_templates_file
from tuner.command_allowlist import resolve_command
from tuner.command_allowlist import templates_from_options
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.kinds import UnsupportedError

SCRIPT = "import json; print(json.dumps(dict(tokens_per_s_per_gpu=7.0, memory_per_gpu_gib=0.5)))"
LOCAL = {
    "model": {
        "name": "tiny",
        "num_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "vocab_size": 1024,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 1},
    "workload": {"seq_len": 64, "global_batch_size": 4},
    "space": {"micro_batch_size": [1], "recompute": ["none"], "sharding": ["none"]},
}


def test_settings_need_templates_when_the_command_evaluator_is_on() -> None:
    with pytest.raises(ValidationError, match="--command-template"):
        Settings(allow_command_evaluator=True)
    with pytest.raises(ValidationError, match="allow_command_evaluator is off"):
        Settings(command_templates={"bench": "python bench.py"})
    with pytest.raises(ValidationError, match="a name is 1-64 letters"):
        Settings(allow_command_evaluator=True, command_templates={"no spaces": "python x.py"})
    with pytest.raises(ValidationError, match="plain knob name"):
        Settings(allow_command_evaluator=True, command_templates={"b": "python x.py {tp.real}"})
    ok = Settings(allow_command_evaluator=True, command_templates={"b": "python x.py {tp}"})
    assert ok.command_templates == {"b": "python x.py {tp}"}


def test_templates_from_a_file_and_options(tmp_path: Path) -> None:
    file = tmp_path / "templates.yaml"
    file.write_text("bench: python /opt/bench.py --tp {tp}\nsmoke: python /opt/smoke.py\n")
    assert load_templates_file(file) == {
        "bench": "python /opt/bench.py --tp {tp}",
        "smoke": "python /opt/smoke.py",
    }
    merged = templates_from_options(["smoke=python /opt/other.py"], file)
    assert merged["smoke"] == "python /opt/other.py"
    with pytest.raises(TemplateError, match="NAME=TEMPLATE"):
        templates_from_options(["no-equals-sign"], None)
    (tmp_path / "list.yaml").write_text("- python a.py\n")
    with pytest.raises(TemplateError, match="mapping of NAME: TEMPLATE"):
        load_templates_file(tmp_path / "list.yaml")


def test_serve_fails_fast_on_a_bad_templates_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--command-templates", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read the command templates file" in result.output


def test_resolution_fills_in_the_command_and_names_the_template() -> None:
    templates = {"bench": "python /opt/bench.py {tp}"}
    by_name, errors = resolve_command(CommandEvaluatorSpec(template="bench"), templates)
    assert errors == [] and by_name.command == "python /opt/bench.py {tp}"
    by_text, errors = resolve_command(CommandEvaluatorSpec(command=by_name.command), templates)
    assert errors == [] and by_text.template == "bench"
    _, errors = resolve_command(CommandEvaluatorSpec(command="python /opt/bench.py"), templates)
    assert [field for field, _ in errors] == ["evaluator.command"]
    _, errors = resolve_command(CommandEvaluatorSpec(command="python x.py"), {})
    assert [field for field, _ in errors] == ["evaluator.type"]


def test_a_spec_needs_a_command_or_a_template() -> None:
    with pytest.raises(ValidationError, match="evaluator.template"):
        parse_job_spec({**LOCAL, "evaluator": {"type": "command"}})


def test_local_runs_take_any_command_but_not_a_server_template_name() -> None:
    command = f"{sys.executable} -c '{SCRIPT}' --anything {{micro_batch_size}}"
    spec = parse_job_spec({**LOCAL, "evaluator": {"type": "command", "command": command}})
    result = run_search(spec, LocalExecutor(), ListSink())
    assert [t.metrics["tokens_per_s_per_gpu"] for t in result.trials] == [7.0]
    named = parse_job_spec({**LOCAL, "evaluator": {"type": "command", "template": "bench"}})
    with pytest.raises(UnsupportedError, match="for a local run"):
        run_search(named, LocalExecutor(), ListSink())
