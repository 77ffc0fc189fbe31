"""The command evaluator's core with real subprocesses: templates are split before they are
filled, metrics come from the last JSON line or named regexes, and a non-zero exit, a timeout
(the whole process group killed) or missing metrics fail with the reason and the output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cost_models.command import CommandFailedError
from cost_models.command import evaluate_command
from cost_models.command import parse_metrics
from cost_models.command import render_command
from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.evaluators import CommandMetrics

PY = sys.executable


def spec(command: str, **settings: Any) -> CommandEvaluatorSpec:
    return CommandEvaluatorSpec(command=command, **settings)


def test_template_is_split_before_it_is_filled() -> None:
    argv = render_command(
        "{python} -c 'print(1)' --name {name} --flag={on}",
        {
            "python": PY,
            "name": "a b; rm -rf /",
            "on": True,
        },
    )
    assert argv == [PY, "-c", "print(1)", "--name", "a b; rm -rf /", "--flag=true"]


def test_unknown_placeholder_names_the_available_ones() -> None:
    with pytest.raises(CommandFailedError, match=r"\{tpp\}.*available: tp") as err:
        render_command("run --tp {tpp}", {"tp": 2})
    assert err.value.kind == "template"


def test_placeholders_must_be_plain_names() -> None:
    with pytest.raises(ValueError, match="plain knob name"):
        spec("echo {tp.__class__}")
    with pytest.raises(ValueError, match="plain knob name"):
        spec("echo {tp!r}")


def test_metrics_from_the_last_json_line() -> None:
    script = "import json; print('warming up'); print(json.dumps(dict(tokens_per_s=10, x='y')))"
    result = evaluate_command(spec(f'{PY} -c "{script}"'), {}, ["tokens_per_s"])
    assert result.metrics == {"tokens_per_s": 10.0}
    assert result.returncode == 0 and "warming up" in result.stdout_tail


def test_metrics_from_named_regexes() -> None:
    how = CommandMetrics(format="regex", patterns={"step_time_s": r"step ([0-9.]+) s"})
    assert parse_metrics("step 0.5 s\nstep 0.25 s\n", how) == {"step_time_s": 0.25}
    with pytest.raises(ValueError, match="capture group"):
        CommandMetrics(format="regex", patterns={"m": r"\d+"})


def test_missing_metrics_fail_with_the_last_line() -> None:
    with pytest.raises(CommandFailedError, match="missing metric.*step_time_s") as err:
        evaluate_command(spec(f"{PY} -c \"print('hello')\""), {}, ["step_time_s"])
    assert err.value.kind == "metrics" and err.value.result is not None
    assert "hello" in err.value.result.stdout_tail


def test_nonzero_exit_fails_with_stderr() -> None:
    script = "import sys; print('boom', file=sys.stderr); sys.exit(3)"
    with pytest.raises(CommandFailedError, match="exit code 3: boom") as err:
        evaluate_command(spec(f'{PY} -c "{script}"'), {}, [])
    assert err.value.kind == "exit"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open(r'{pid_file}', 'w').write(str(p.pid)); time.sleep(60)"
    )
    start = time.monotonic()
    with pytest.raises(CommandFailedError, match="timed out after 1 s") as err:
        evaluate_command(spec(f'{PY} -c "{script}"', timeout_s=1), {}, [])
    assert err.value.kind == "timeout" and time.monotonic() - start < 30
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        if not Path(f"/proc/{grandchild}").exists() or _zombie(grandchild):
            break
        time.sleep(0.1)
    else:
        os.kill(grandchild, 9)
        raise AssertionError("the command's own child survived the timeout")


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


def test_output_is_kept_truncated() -> None:
    script = "import json; print('x' * 10000); print(json.dumps(dict(m=1)))"
    result = evaluate_command(spec(f'{PY} -c "{script}"', output_limit_chars=100), {}, ["m"])
    assert len(result.stdout_tail) < 200 and "characters cut" in result.stdout_tail


def test_a_missing_program_fails_to_spawn() -> None:
    with pytest.raises(CommandFailedError, match="cannot start") as err:
        evaluate_command(spec("/no/such/program --x"), {}, [])
    assert err.value.kind == "spawn"
