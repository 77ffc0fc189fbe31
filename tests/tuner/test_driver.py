"""The driver on real specs with the in-process executor: exhaustive and sampled searches,
resume without re-evaluation, cancellation, and an empty space explained."""

from __future__ import annotations

from typing import Any

import pytest

from results.records import TrialRecord
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import SpaceEmptyError
from tuner.driver import run_search
from tuner.pareto import dominates

BASE: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
    "space": {"tp": [1, 2, 4], "pp": [1, 2], "micro_batch_size": [1, 2]},
}


def spec_of(**changes: Any) -> TrainingJobSpec:
    spec = parse_job_spec({**BASE, **changes})
    assert isinstance(spec, TrainingJobSpec)
    return spec


def losses(t: TrialRecord, spec: TrainingJobSpec) -> list[float]:
    return [o.loss(t.metrics[o.metric]) for o in spec.objectives]


def test_exhaustive_search_front_and_recommendation() -> None:
    spec = spec_of()
    sink = ListSink()
    result = run_search(spec, LocalExecutor(), sink)
    assert result.plan.mode == "exhaustive"
    assert len(result.trials) == result.plan.space_size == len(sink.trials)
    assert len({t.config_key for t in result.trials}) == len(result.trials)
    feasible = [t for t in result.trials if t.feasible]
    assert result.front and all(t.feasible for t in result.front)
    for p in result.front:
        assert not any(dominates(losses(t, spec), losses(p, spec)) for t in feasible)
    rec = result.recommendation
    assert rec is not None
    assert rec.metrics["tokens_per_s_per_gpu"] == max(
        t.metrics["tokens_per_s_per_gpu"] for t in feasible
    )
    assert "tokens_per_s_per_gpu" in rec.reason


def test_sampled_search_respects_budget_and_never_repeats() -> None:
    spec = spec_of(space=None, budget={"trials": 40, "batch_size": 10, "exhaustive_limit": 10})
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.plan.mode == "sampled"
    assert len(result.trials) <= 40
    assert len({t.config_key for t in result.trials}) == len(result.trials)
    assert result.sampler["class"] == "ValidSetSampler"
    assert result.sampler["optuna_version"].startswith("5.")


def test_resume_does_not_evaluate_stored_trials_again() -> None:
    spec = spec_of()
    first = run_search(spec, LocalExecutor(), ListSink())
    half = first.trials[: len(first.trials) // 2]
    sink = ListSink()
    second = run_search(spec, LocalExecutor(), sink, existing=half)
    assert len(sink.trials) == len(first.trials) - len(half)
    assert {t.config_key for t in sink.trials}.isdisjoint({t.config_key for t in half})
    assert min(t.number for t in sink.trials) == max(t.number for t in half) + 1
    assert len(second.trials) == len(first.trials)


class StopAfterFirst(ListSink):
    def should_stop(self) -> bool:
        return bool(self.trials)


def test_cancel_stops_between_batches() -> None:
    spec = spec_of(space={"tp": [1, 2, 4, 8], "pp": [1, 2, 4], "micro_batch_size": [1, 2, 4]})
    result = run_search(spec, LocalExecutor(), StopAfterFirst())
    assert result.cancelled
    assert len(result.trials) < result.plan.space_size


def test_empty_space_names_the_rule() -> None:
    spec = spec_of(space={"tp": [3]})
    with pytest.raises(SpaceEmptyError) as err:
        run_search(spec, LocalExecutor(), ListSink())
    assert "tp" in str(err.value)


def test_limits_make_trials_infeasible_with_a_reason() -> None:
    spec = spec_of(limits={"max_memory_per_gpu_gib": 30})
    result = run_search(spec, LocalExecutor(), ListSink())
    over = [t for t in result.trials if t.metrics.get("memory_per_gpu_gib", 0) > 30]
    assert over and all(not t.feasible for t in over)
    assert all(any("max_memory_per_gpu_gib" in v for v in t.violations) for t in over)
    assert all(t.metrics["memory_per_gpu_gib"] <= 30 for t in result.front)
