"""The ``command`` evaluator: run the user's own benchmark per trial and read its metrics.

The template is split with ``shlex`` first and each argument is filled in afterwards, so a
knob value can never add arguments or reach a shell (there is none: no ``shell=True``). The
command runs in its own process group; on timeout the whole group is killed (``torchrun`` and
its workers alike). Output is kept, truncated, with the trial.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import time
from enum import Enum
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict

from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.evaluators import CommandMetrics
from search_spaces.evaluators import command_placeholders

FailureKind = Literal["template", "spawn", "timeout", "exit", "metrics"]


class CommandResult(BaseModel):
    """What one run produced; ``metrics`` is empty when it failed."""

    model_config = ConfigDict(frozen=True)

    argv: list[str]
    returncode: int | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    metrics: dict[str, float] = {}


class CommandFailedError(RuntimeError):
    """The trial failed; ``kind`` says how, ``result`` keeps the output when there was one."""

    def __init__(self, kind: FailureKind, message: str, result: CommandResult | None = None):
        super().__init__(message)
        self.kind = kind
        self.result = result


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def render_command(template: str, values: dict[str, Any]) -> list[str]:
    """The argument vector: ``shlex.split`` the template, then fill each argument."""
    try:
        args = shlex.split(template)
    except ValueError as exc:
        raise CommandFailedError("template", f"command template: {exc}") from None
    unknown = sorted({n for n in command_placeholders(template) if n not in values})
    if unknown:
        raise CommandFailedError(
            "template",
            f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; available: "
            + ", ".join(sorted(values)),
        )
    return [arg.format(**{n: _text(values[n]) for n in command_placeholders(arg)}) for arg in args]


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[len(text) - limit :]


def run_command(spec: CommandEvaluatorSpec, argv: list[str]) -> tuple[CommandResult, str]:
    """Run ``argv``: its result and full stdout; raises CommandFailedError for a missing
    program or a timeout."""
    limit = spec.output_limit_chars
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env={**os.environ, **spec.env},
            cwd=spec.workdir,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailedError("spawn", f"cannot start {argv[0]!r}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=spec.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        result = CommandResult(
            argv=argv,
            returncode=None,
            duration_s=time.perf_counter() - start,
            stdout_tail=_tail(out, limit),
            stderr_tail=_tail(err, limit),
        )
        raise CommandFailedError(
            "timeout", f"timed out after {spec.timeout_s:g} s (process group killed)", result
        ) from None
    return CommandResult(
        argv=argv,
        returncode=proc.returncode,
        duration_s=time.perf_counter() - start,
        stdout_tail=_tail(out, limit),
        stderr_tail=_tail(err, limit),
    ), out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_metrics(stdout: str, how: CommandMetrics) -> dict[str, float]:
    """Numbers from the JSON object on the last non-empty line, or from named regexes."""
    if how.format == "regex":
        found = {}
        for metric, pattern in how.patterns.items():
            matches = re.findall(pattern, stdout, flags=re.MULTILINE)
            if matches:
                last = matches[-1]
                value = _number(last[0] if isinstance(last, tuple) else last)
                if value is not None:
                    found[metric] = value
        return found
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    try:
        data = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in ((k, _number(v)) for k, v in data.items()) if v is not None}


def evaluate_command(
    spec: CommandEvaluatorSpec, values: dict[str, Any], required: list[str]
) -> CommandResult:
    """Render, run and read one trial; raises CommandFailedError with the reason."""
    argv = render_command(spec.command, values)
    result, stdout = run_command(spec, argv)
    if result.returncode != 0:
        last = result.stderr_tail.strip().splitlines()[-3:]
        raise CommandFailedError(
            "exit", f"exit code {result.returncode}: {' | '.join(last) or 'no stderr'}", result
        )
    metrics = parse_metrics(stdout, spec.metrics)
    missing = [m for m in required if m not in metrics]
    if missing:
        where = (
            "the last stdout line is not a JSON object with them"
            if spec.metrics.format == "json"
            else "no pattern matched"
        )
        raise CommandFailedError(
            "metrics", f"missing metric(s) {', '.join(missing)}: {where}", result
        )
    return result.model_copy(update={"metrics": metrics})
