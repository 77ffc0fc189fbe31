"""The job spec: the one document the CLI and ``POST /v1/jobs`` accept (see DESIGN.md)."""

from __future__ import annotations

from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import Field
from pydantic import TypeAdapter
from pydantic import ValidationError
from pydantic import field_validator

from search_spaces.config import TrainingConfig
from search_spaces.evaluators import EVALUATOR_TYPES
from search_spaces.evaluators import AnalyticalEvaluatorSpec
from search_spaces.evaluators import EvaluatorSpec
from search_spaces.evaluators import evaluator_from
from search_spaces.inference_config import INFERENCE_KNOBS
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_config import coerce_knob_value
from search_spaces.objectives import DEFAULT_OBJECTIVES
from search_spaces.objectives import Objective
from search_spaces.objectives import metrics_for
from search_spaces.specs import ClusterSpec
from search_spaces.specs import Frozen
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

SamplerName = Literal["auto", "bo", "tpe", "nsga2", "random", "gp"]


MAX_DEFAULT_BATCH = 32
TRIALS_PER_BATCH = 25  # rounds of feedback the default batch size leaves a sampled search


class Budget(Frozen):
    trials: int = Field(default=200, ge=1, le=100_000, description="Evaluations at most.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Trials asked per batch (run in parallel, then told to the sampler "
        "together). Unset: trials // 25, between 1 and 32 (8 for 200 trials), so a sampled "
        "search learns from about 25 rounds of results; set it to keep more trials in flight.",
    )
    exhaustive_limit: int = Field(
        default=20000,
        ge=0,
        le=1_000_000,
        description="Evaluate every valid point when the space has at most this many.",
    )

    def batch(self) -> int:
        """Trials per ask/tell round: ``batch_size`` when given, else sized to the budget.

        A sampler learns only between batches: 32 trials per batch (the old default) left a
        50-trial search one round of feedback, and measured (with TPE, the default then)
        0.86-0.89 of the exhaustive hypervolume at 50 trials against 0.90-0.95 with 8
        (benchmarks/search_efficiency.py). Batches matter less for cost: analytical trials are
        dispatched in chunks anyway.
        """
        if self.batch_size is not None:
            return self.batch_size
        return max(1, min(MAX_DEFAULT_BATCH, self.trials // TRIALS_PER_BATCH))


class SamplerSpec(Frozen):
    name: SamplerName = "auto"
    seed: int = 0


def _resolve_model(value: Any) -> Any:
    """A catalog id, an inline architecture, or ``{hf_config: {...config.json...}}``."""
    if isinstance(value, str):
        from search_spaces.catalog import load_model

        return load_model(value)
    if isinstance(value, dict) and "hf_config" in value:
        cfg = value["hf_config"]
        if not isinstance(cfg, dict):
            raise ValueError(
                "model.hf_config must hold the config.json object itself "
                "(the CLI reads a path for you; the REST API never reads server files)"
            )
        from search_spaces.hf_import import model_from_hf_config

        return model_from_hf_config(cfg, name=value.get("name"))
    return value


class _JobSpecBase(Frozen):
    name: str = Field(default="", max_length=200)
    model: ModelSpec
    cluster: ClusterSpec
    objectives: list[Objective] = Field(default_factory=list, validate_default=True)
    limits: dict[str, float] = Field(
        default_factory=dict,
        description="Constraints as max_<metric> / min_<metric>, e.g. max_memory_per_gpu_gib.",
    )
    evaluator: EvaluatorSpec = Field(default_factory=AnalyticalEvaluatorSpec)
    budget: Budget = Field(default_factory=Budget)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        return _resolve_model(value)

    @field_validator("evaluator", mode="before")
    @classmethod
    def _evaluator(cls, value: Any) -> Any:
        return evaluator_from(value)

    @classmethod
    def _kind(cls) -> str:
        default = cls.model_fields["kind"].default
        return str(default) if isinstance(default, str) else "training"

    @field_validator("objectives", mode="before")
    @classmethod
    def _objectives(cls, raw: Any) -> Any:
        """``max:metric`` strings (default: the kind's usual pair) become Objectives."""
        kind = cls._kind()
        raw = raw or DEFAULT_OBJECTIVES.get(kind, [])
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list) and all(isinstance(o, str) for o in raw):
            raw = [Objective.parse(o, kind) for o in raw]
        return raw

    @field_validator("objectives")
    @classmethod
    def _distinct_objectives(cls, value: list[Objective]) -> list[Objective]:
        names = [o.metric for o in value]
        if len(set(names)) != len(names):
            raise ValueError("objectives must not repeat a metric")
        if not names:
            raise ValueError("give at least one objective, e.g. max:tokens_per_s_per_gpu")
        return value

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: dict[str, float]) -> dict[str, float]:
        known = metrics_for(cls._kind())
        for key in value:
            bound, _, metric = key.partition("_")
            if bound not in ("max", "min") or metric not in known:
                raise ValueError(
                    f"limit '{key}' must be max_<metric> or min_<metric> with a metric among: "
                    f"{', '.join(sorted(known))}"
                )
        return value


class TrainingJobSpec(_JobSpecBase):
    kind: Literal["training"] = "training"
    workload: TrainingWorkload
    config: TrainingConfig | None = Field(
        default=None, description="One fixed point (estimate); unset knobs take defaults."
    )
    space: dict[str, list[Any]] | None = Field(
        default=None, description="Values to search per knob; unset knobs use the full range."
    )

    @field_validator("space")
    @classmethod
    def _space_knobs(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if value is None:
            return value
        known = set(TrainingConfig.model_fields)
        for knob, values in value.items():
            if knob not in known:
                raise ValueError(
                    f"unknown training knob '{knob}' in space; knobs: {', '.join(sorted(known))}"
                )
            if not values:
                raise ValueError(f"space.{knob} is empty; give at least one value")
            for v in values:
                try:
                    TrainingConfig.model_validate({knob: v})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"]
                    raise ValueError(f"space.{knob}: value {v!r} is invalid: {msg}") from None
        return value


class InferenceJobSpec(_JobSpecBase):
    kind: Literal["inference"] = "inference"
    workload: InferenceWorkload
    config: InferenceConfig | None = Field(
        default=None, description="One fixed point (estimate); unset knobs take defaults."
    )
    space: dict[str, list[Any]] | None = Field(
        default=None,
        description="Values to search per knob (pool knobs as prefill_tp, decode_workers, ...); "
        "unset knobs use the full range.",
    )

    @field_validator("space")
    @classmethod
    def _space_knobs(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if value is None:
            return value
        for knob, values in value.items():
            if knob not in INFERENCE_KNOBS:
                coerce_knob_value(knob, None)  # raises, listing the knobs
            if not values:
                raise ValueError(f"space.{knob} is empty; give at least one value")
            for v in values:
                if v is not None:
                    coerce_knob_value(knob, v)
        return value


JobSpec = Annotated[TrainingJobSpec | InferenceJobSpec, Field(discriminator="kind")]
_JOB_SPEC_ADAPTER: TypeAdapter[TrainingJobSpec | InferenceJobSpec] = TypeAdapter(JobSpec)


def parse_job_spec(data: Any) -> TrainingJobSpec | InferenceJobSpec:
    """Validate a raw spec document; ``kind`` defaults to training.

    Raises pydantic ``ValidationError``; use :func:`format_validation_error` for a message.
    """
    if isinstance(data, dict) and "kind" not in data:
        data = {**data, "kind": "training"}
    return _JOB_SPEC_ADAPTER.validate_python(data)


def job_spec_json_schema() -> dict[str, Any]:
    return _JOB_SPEC_ADAPTER.json_schema()


def error_locations(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per error, without pydantic's discriminator/union tags."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if loc and loc[0] in ("training", "inference"):
            loc = loc[1:]
        if loc[:1] == ["evaluator"] and loc[1:2] and loc[1] in EVALUATOR_TYPES:
            loc = loc[:1] + loc[2:]  # the evaluator union's tag
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if err["type"] in ("missing",):
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field; check its spelling against DESIGN.md"
        elif not isinstance(value, dict | list) and "input" in err:
            msg = f"{msg} (got {value!r})"
        out.append((".".join(loc) or "spec", msg))
    return out


def format_validation_error(exc: ValidationError) -> str:
    """One readable message: ``field.path: what is wrong`` per line."""
    return "\n".join(f"{loc}: {msg}" for loc, msg in error_locations(exc))
