"""Turning configurations into trial outcomes: the function every executor runs.

Kept free of Ray and of the database so that a Ray worker, a thread and a test all run the
same code on plain JSON data. Which model evaluates a config is looked up in
:mod:`tuner.kinds` from the job's kind and evaluator.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from search_spaces.config import config_hash
from search_spaces.job_spec import format_validation_error
from search_spaces.job_spec import parse_job_spec


class Outcome(BaseModel):
    """What evaluating one configuration produced."""

    model_config = ConfigDict(frozen=True)

    metrics: dict[str, float] = Field(default_factory=dict)
    feasible: bool = True
    violations: list[str] = Field(default_factory=list)
    constraints: dict[str, float] = Field(
        default_factory=dict, description="Optuna constraint values: feasible when <= 0."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0


def limit_constraints(metrics: dict[str, float], limits: dict[str, float]) -> dict[str, float]:
    """Each ``max_<metric>``/``min_<metric>`` limit as an Optuna constraint value (<= 0 is ok)."""
    out = {}
    for key, bound in limits.items():
        kind, _, metric = key.partition("_")
        value = metrics[metric]
        out[key] = value - bound if kind == "max" else bound - value
    return out


@lru_cache(maxsize=16)
def _spec_from_json(spec_key: str, spec_json: str) -> Any:
    """Parse a spec once per worker process (specs arrive as JSON text)."""
    return parse_job_spec(json.loads(spec_json))


def evaluate_batch(spec_json: str, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluate a batch of configurations of one job; JSON in, JSON out (Ray-friendly).

    When the job's kind has a batch evaluator for its evaluator (the vectorised analytical
    training model), the parsed configurations are evaluated in one call and each trial's
    ``duration_s`` is its share of that call; otherwise one by one."""
    from tuner.kinds import evaluator_for
    from tuner.kinds import kind_of

    spec = _spec_from_json(config_hash(spec_json), spec_json)
    kind = kind_of(spec)
    evaluate = evaluator_for(spec)
    together = kind.batch_evaluators.get(spec.evaluator.type)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    node = ray_node_id()
    outcomes: list[Outcome | None] = [None] * len(configs)
    seconds = [0.0] * len(configs)
    parsed: list[tuple[int, Any]] = []
    for i, raw in enumerate(configs):
        start = time.perf_counter()
        try:
            config = kind.parse_config(raw)
        except ValidationError as exc:
            outcomes[i] = Outcome(error=format_validation_error(exc), feasible=False)
        else:
            if together is None:
                outcomes[i] = _evaluate_one(evaluate, spec, config)
            else:
                parsed.append((i, config))
        seconds[i] = time.perf_counter() - start
    if parsed and together is not None:
        start = time.perf_counter()
        results = _evaluate_together(together, evaluate, spec, [c for _, c in parsed])
        share = (time.perf_counter() - start) / len(parsed)
        for (i, _), done in zip(parsed, results, strict=True):
            outcomes[i] = done
            seconds[i] += share
    out = []
    for result, elapsed in zip(outcomes, seconds, strict=True):
        assert result is not None
        dumped = result.model_dump(mode="json")
        dumped["duration_s"] = result.duration_s or elapsed
        dumped["details"]["worker"] = worker
        if node:
            dumped["details"]["ray_node_id"] = node
        out.append(dumped)
    return out


def _evaluate_one(evaluate: Callable[[Any, Any], Outcome], spec: Any, config: Any) -> Outcome:
    try:
        return evaluate(spec, config)
    except Exception as exc:  # one broken trial must not lose the rest of the batch
        return Outcome(error=f"evaluator crashed: {type(exc).__name__}: {exc}")


def _evaluate_together(
    together: Callable[[Any, list[Any]], list[Outcome]],
    evaluate: Callable[[Any, Any], Outcome],
    spec: Any,
    configs: list[Any],
) -> list[Outcome]:
    """The batch evaluator's outcomes; if it crashes (or miscounts), the configurations one
    by one, so that one broken configuration fails only its own trial."""
    try:
        outcomes = together(spec, configs)
    except Exception:
        outcomes = []
    if len(outcomes) == len(configs):
        return outcomes
    return [_evaluate_one(evaluate, spec, config) for config in configs]


def ray_node_id() -> str | None:
    """The Ray node this process runs on, when it is a Ray worker (or driver); else None.
    Never imports Ray: a process that has not imported it is not in a Ray cluster."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    node: str = ray.get_runtime_context().get_node_id()
    return node


def failed_outcome(error: str, **details: Any) -> dict[str, Any]:
    """A failed trial as an executor returns it, for trials whose task never answered
    (the worker died, the task timed out or could not be scheduled)."""
    return Outcome(error=error, feasible=False, details=details).model_dump(mode="json")
