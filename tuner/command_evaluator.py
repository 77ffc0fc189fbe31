"""The ``command`` evaluator for any job kind: the user's own benchmark, one run per trial.

A template placeholder may name any knob of the configuration, any workload field, the
cluster's size, the model's main dimensions, the derived data-parallel size of a training
configuration (``dp``), or ``python`` (the worker's interpreter). Results are never reused
from other jobs: the spec does not pin down the user's script, which may have changed.
"""

from __future__ import annotations

import sys
from typing import Any

from cost_models.command import CommandFailedError
from cost_models.command import evaluate_command
from search_spaces.config import TrainingConfig
from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.evaluators import command_placeholders
from tuner.evaluation import Outcome
from tuner.kinds import Dispatch
from tuner.kinds import kind_of
from tuner.measured_outcome import measured_outcome

TASK_TIMEOUT_GRACE_S = 120.0  # the command's own timeout fires first; Ray's is a backstop


def _scalars(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not isinstance(v, dict | list)}


def command_values(spec: Any, config: Any) -> dict[str, Any]:
    """What a command template may use (see the module docstring)."""
    model, cluster = spec.model, spec.cluster
    values = {
        **_scalars(config.model_dump(mode="json")),
        **_scalars(spec.workload.model_dump(mode="json")),
        "num_gpus": cluster.num_gpus,
        "gpus_per_node": cluster.gpus_per_node,
        "model_name": model.name,
        "num_layers": model.num_layers,
        "hidden_size": model.hidden_size,
        "num_attention_heads": model.num_attention_heads,
        "num_kv_heads": model.num_kv_heads,
        "ffn_hidden_size": model.ffn_hidden_size,
        "vocab_size": model.vocab_size,
        "python": sys.executable,
    }
    if isinstance(config, TrainingConfig):
        dp = config.dp(cluster.num_gpus)
        values["dp"] = dp
        values["num_microbatches"] = spec.workload.global_batch_size // max(
            1, dp * config.micro_batch_size
        )
    return values


def required_metrics(spec: Any) -> list[str]:
    """The objectives' and the limits' metrics: a trial without them cannot be ranked."""
    needed = [o.metric for o in spec.objectives]
    needed += [k.partition("_")[2] for k in spec.limits]
    return list(dict.fromkeys(needed))


def evaluate_with_command(spec: Any, config: Any) -> Outcome:
    """Run the user's command for this configuration and read its metrics."""
    settings = spec.evaluator
    assert isinstance(settings, CommandEvaluatorSpec)
    try:
        result = evaluate_command(settings, command_values(spec, config), required_metrics(spec))
    except CommandFailedError as exc:
        kept = exc.result.model_dump(mode="json") if exc.result else {}
        return Outcome(error=f"{exc.kind}: {exc}", feasible=False, details={"command": kept})
    predicted = kind_of(spec).evaluators["analytical"](spec, config)
    details = {"command": result.model_dump(mode="json", exclude={"metrics"})}
    capacity = spec.cluster.gpu.memory_gib
    outcome = measured_outcome(spec, result.metrics, predicted.metrics, capacity, details)
    return outcome.model_copy(update={"duration_s": result.duration_s})


def _options(spec: Any, resources: dict[str, Any]) -> dict[str, Any]:
    s = spec.evaluator
    assert isinstance(s, CommandEvaluatorSpec)
    return {
        "num_cpus": s.resources.num_cpus,
        "num_gpus": s.resources.num_gpus,
        "timeout_s": s.timeout_s + TASK_TIMEOUT_GRACE_S,
        "max_retries": 1,
    }


def check_command(spec: Any) -> None:
    """Every placeholder must name something ``command_values`` offers (before any trial)."""
    s = spec.evaluator
    assert isinstance(s, CommandEvaluatorSpec)
    if not s.command.strip():
        raise ValueError(
            f"template '{s.template}' is one a paretune server allow-lists and fills in as "
            "evaluator.command; for a local run (`paretune tune`) give evaluator.command"
        )
    kind = kind_of(spec)
    known = command_values(spec, kind.default_config(spec))
    unknown = sorted({n for n in command_placeholders(s.command) if n not in known})
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} in the "
            f"command; available: {', '.join(sorted(known))}"
        )


COMMAND_DISPATCH = Dispatch(chunk_size=1, task_options=_options, check=check_command, reuse=False)
