"""Evaluator settings of a job spec: a discriminated union on ``type``.

``evaluator: analytical`` (a bare string) still works: the job spec turns it into
``{type: analytical}``. Each real-measurement evaluator carries what it needs to run on a
worker (steps, device, timeouts, resources), so a worker never reads anything but the spec.
"""

from __future__ import annotations

import re
import string
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator

from search_spaces.specs import Frozen
from search_spaces.specs import GPUSpec

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProfileCalibration(Frozen):
    """A calibration fitted to a stored hardware profile: the device figures it measured
    and the analytical model's efficiency constants fitted to them.

    Filled in from ``hardware_profile`` when the job starts (so workers need no database),
    or given inline to use a fit made elsewhere.
    """

    profile_name: str = Field(description="Name of the stored hardware profile.")
    profile_id: int | None = Field(default=None, description="Its row id, when stored.")
    device: GPUSpec = Field(description="Device figures with the measured ones in place.")
    constants: dict[str, float] = Field(
        default_factory=dict, description="Calibration constants (cost_models.Calibration)."
    )


class _Calibrated(Frozen):
    hardware_profile: str | None = Field(
        default=None,
        max_length=200,
        description="Name of a stored hardware profile (`paretune calibrate --name`) to "
        "calibrate the analytical model with.",
    )
    calibration: ProfileCalibration | None = Field(
        default=None, description="Resolved from hardware_profile when the job starts."
    )


class AnalyticalEvaluatorSpec(_Calibrated):
    type: Literal["analytical"] = "analytical"


class ProfileEvaluatorSpec(_Calibrated):
    """Run the candidate's per-GPU shard as a real PyTorch model and time it."""

    type: Literal["profile"] = "profile"
    warmup_steps: int = Field(default=2, ge=0, le=100, description="Untimed steps first.")
    timed_steps: int = Field(default=3, ge=1, le=1000, description="Steps timed (median).")
    max_layers: int = Field(
        default=4, ge=1, le=1024, description="Profile at most this many layers, then scale."
    )
    max_hidden_size: int | None = Field(
        default=None, ge=64, description="Cap the hidden size (None: only when memory requires)."
    )
    max_context_len: int | None = Field(
        default=None,
        ge=16,
        description="Serving profiles: cached tokens per request to build at most (prompt + "
        "output, scaled proportionally and fitted back); None: 2048 on a CPU, device memory "
        "on a GPU.",
    )
    prefill_chunk_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Serving profiles: prefill chunk; None: the backend's chunked-prefill size.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_cpus: int = Field(
        default=1, ge=1, le=1024, description="CPUs per trial (its threads on a CPU)."
    )
    isolate: bool = Field(
        default=True,
        description="Profile in a fresh child process: exact peak memory, and a crash or an "
        "out-of-memory kill fails only the trial.",
    )
    timeout_s: float = Field(default=1800.0, gt=0, le=86_400, description="Per trial.")


class HybridEvaluatorSpec(ProfileEvaluatorSpec):
    """Search with the analytical model, then profile the top-k of the front for real."""

    type: Literal["hybrid"] = "hybrid"  # type: ignore[assignment]
    top_k: int = Field(default=4, ge=1, le=256, description="Front points profiled.")


class CommandResources(Frozen):
    num_cpus: float = Field(default=1.0, ge=0, le=1024)
    num_gpus: float = Field(default=0.0, ge=0, le=1024)


class CommandMetrics(Frozen):
    """How to read metrics from the command's output."""

    format: Literal["json", "regex"] = Field(
        default="json", description="json: an object on the last non-empty stdout line."
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="regex format: metric -> pattern with one group (the last match counts).",
    )

    @field_validator("patterns")
    @classmethod
    def _compile(cls, value: dict[str, str]) -> dict[str, str]:
        for metric, pattern in value.items():
            try:
                groups = re.compile(pattern).groups
            except re.error as exc:
                raise ValueError(f"patterns.{metric}: invalid regex: {exc}") from None
            if groups < 1:
                raise ValueError(f"patterns.{metric}: give one capture group for the number")
        return value


class CommandEvaluatorSpec(Frozen):
    """Run a user command per trial; knobs fill ``{placeholders}`` in the template.

    Locally (``paretune tune``) ``command`` is the user's own. A server runs only templates its
    operator allow-listed (``tuner.command_allowlist``): a job names one with ``template`` and
    the server fills in ``command``."""

    type: Literal["command"] = "command"
    command: str = Field(
        default="",
        max_length=10_000,
        description="Template, shlex-split; on a server, filled in from `template`.",
    )
    template: str | None = Field(
        default=None,
        max_length=64,
        description="Name of a command template the server allow-lists (`paretune serve "
        "--command-template NAME=TEMPLATE`).",
    )
    timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    resources: CommandResources = Field(default_factory=CommandResources)
    metrics: CommandMetrics = Field(default_factory=CommandMetrics)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    workdir: str | None = Field(default=None, description="Working directory of the command.")
    output_limit_chars: int = Field(default=4000, ge=0, le=1_000_000)

    @field_validator("command")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        command_placeholders(value)
        return value

    @model_validator(mode="after")
    def _command_or_template(self) -> CommandEvaluatorSpec:
        if not self.command.strip() and self.template is None:
            raise ValueError(
                "give evaluator.command (the command line to run per trial) or, on a server, "
                "evaluator.template (the name of a template it allow-lists)"
            )
        return self


def command_placeholders(template: str) -> list[str]:
    """Names of the ``{placeholders}`` in ``template``; only bare names are allowed (no
    attribute or index access, no format specs), so a template cannot reach into objects."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"command template: {exc} (write {{{{ and }}}} for braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _NAME.match(name) or spec or conversion:
            raise ValueError(f"command template: placeholder {{{name}}} must be a plain knob name")
        names.append(name)
    return names


EvaluatorSpec = Annotated[
    AnalyticalEvaluatorSpec | ProfileEvaluatorSpec | HybridEvaluatorSpec | CommandEvaluatorSpec,
    Field(discriminator="type"),
]
AnyEvaluatorSpec = (
    AnalyticalEvaluatorSpec | ProfileEvaluatorSpec | HybridEvaluatorSpec | CommandEvaluatorSpec
)
EVALUATOR_TYPES = ("analytical", "profile", "hybrid", "command")


def evaluator_from(value: Any) -> Any:
    """A bare type name (``evaluator: profile``) becomes ``{type: profile}``."""
    return {"type": value} if isinstance(value, str) else value
