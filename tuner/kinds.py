"""Job kinds: for each kind (training, inference), how to build its space, read a config,
evaluate a config with each evaluator, and estimate one point. The driver, the runner, the
CLI and the API go through this table only, so a new kind or evaluator is one registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from search_spaces.job_spec import InferenceJobSpec
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.space import SearchSpace

AnyJobSpec = TrainingJobSpec | InferenceJobSpec


class UnsupportedError(ValueError):
    """A kind or evaluator this version does not offer; the message says what is."""


@dataclass(frozen=True)
class Dispatch:
    """How the driver sends one evaluator's trials to the executor (defaults suit the
    millisecond analytical models: many configurations per task, no special resources)."""

    chunk_size: int = 128  # configurations per executor task
    # (spec, executor resources) -> task options: num_cpus, num_gpus, timeout_s, max_retries
    task_options: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    # spec -> None; raises ValueError for settings this evaluator cannot run
    check: Callable[[Any], None] | None = None
    # run after the search when set (hybrid: profile the front); see tuner.driver.run_search
    finish: Callable[..., Any] | None = None
    # reuse stored evaluations of the same ground from other jobs (off when the evaluator
    # runs something the spec does not pin down, like a user's script)
    reuse: bool = True


@dataclass(frozen=True)
class JobKind:
    name: str
    build_space: Callable[[Any], SearchSpace]
    parse_config: Callable[[dict[str, Any]], Any]
    default_config: Callable[[Any], Any]
    estimate: Callable[[Any, Any], dict[str, Any]]
    # evaluator type -> function(spec, config) -> tuner.evaluation.Outcome
    evaluators: dict[str, Callable[[Any, Any], Any]] = field(default_factory=dict)
    # Optional: pick the recommendation (spec, front, trials) -> Recommendation | None;
    # None uses tuner.recommend.recommend (best on the first objective, ties by the next).
    recommend: Callable[[Any, list[Any], list[Any]], Any] | None = None
    # evaluator type -> version string; part of every evaluation key, so a changed model
    # never reuses stale results
    versions: dict[str, str] = field(default_factory=dict)
    # launch format -> (file name, function(spec, config, metrics) -> file text)
    exporters: dict[str, tuple[str, Callable[[Any, Any, dict[str, float]], str]]] = field(
        default_factory=dict
    )
    # evaluator type -> how its trials are dispatched (absent: Dispatch())
    dispatch: dict[str, Dispatch] = field(default_factory=dict)
    # evaluator type -> function(spec, configs) -> list of Outcome, one per config: the same
    # outcomes as the per-config evaluator for a whole chunk at once (vectorised models)
    batch_evaluators: dict[str, Callable[[Any, list[Any]], list[Any]]] = field(default_factory=dict)


_KINDS: dict[str, JobKind] = {}


def register_kind(kind: JobKind) -> None:
    _KINDS[kind.name] = kind


def register_evaluator(
    kind: str,
    evaluator: str,
    fn: Callable[[Any, Any], Any],
    *,
    version: str | None = None,
    dispatch: Dispatch | None = None,
    batch_fn: Callable[[Any, list[Any]], list[Any]] | None = None,
) -> None:
    """Plug an evaluator into a job kind: ``fn`` per configuration, and optionally
    ``batch_fn`` for a whole chunk at once (the same outcomes, e.g. a vectorised model)."""
    target = job_kind(kind)
    target.evaluators[evaluator] = fn
    if batch_fn is not None:
        target.batch_evaluators[evaluator] = batch_fn
    if version is not None:
        target.versions[evaluator] = version
    if dispatch is not None:
        target.dispatch[evaluator] = dispatch


def dispatch_for(spec: AnyJobSpec) -> Dispatch:
    """How the job's evaluator wants its trials dispatched."""
    return kind_of(spec).dispatch.get(spec.evaluator.type, Dispatch())


def job_kind(name: str) -> JobKind:
    _load_builtin_kinds()
    if name not in _KINDS:
        known = ", ".join(sorted(_KINDS)) or "none"
        raise UnsupportedError(
            f"kind '{name}' is not available in this version (available: {known})"
        )
    return _KINDS[name]


def kind_of(spec: AnyJobSpec) -> JobKind:
    return job_kind(spec.kind)


def evaluator_for(spec: AnyJobSpec) -> Callable[[Any, Any], Any]:
    kind = kind_of(spec)
    name = spec.evaluator.type
    if name not in kind.evaluators:
        known = ", ".join(sorted(kind.evaluators))
        raise UnsupportedError(
            f"evaluator '{name}' is not available for {kind.name} jobs (available: {known})"
        )
    check = kind.dispatch[name].check if name in kind.dispatch else None
    if check is not None:
        try:
            check(spec)
        except ValueError as exc:
            raise UnsupportedError(f"evaluator '{name}': {exc}") from None
    return kind.evaluators[name]


def evaluator_version(spec: AnyJobSpec) -> str:
    """``type@version`` of the job's evaluator (the version when the kind declares one)."""
    name = spec.evaluator.type
    version = kind_of(spec).versions.get(name, "unversioned")
    return f"{name}@{version}"


_LOADED = False


def _load_builtin_kinds() -> None:
    """Import the built-in kinds once (lazily, so importing this module stays cheap)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import tuner.training_kind  # noqa: F401  (registers itself)

    try:
        import tuner.inference_kind  # noqa: F401
    except ModuleNotFoundError as exc:  # not built yet in this version
        if exc.name != "tuner.inference_kind":
            raise
    import tuner.measured_evaluators  # noqa: F401  (profile, hybrid, command)
