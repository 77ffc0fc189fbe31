"""The default batch is sized to the trial budget (an explicit batch_size is honoured), the
driver asks in those batches, and NSGA-II's population follows the batch so that its
generations complete under batched ask/tell."""

from __future__ import annotations

from typing import Any

import optuna

from results.records import TrialRecord
from search_spaces.job_spec import Budget
from search_spaces.job_spec import SamplerSpec
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.study import make_sampler
from tuner.study import make_study

SAMPLED: dict[str, Any] = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
}


def test_default_batch_follows_the_budget_and_an_explicit_one_is_kept() -> None:
    assert Budget().batch() == 8  # 200 trials
    assert [Budget(trials=n).batch() for n in (1, 24, 50, 100, 800, 5000)] == [1, 1, 2, 4, 32, 32]
    assert Budget(trials=50, batch_size=32).batch() == 32
    stored = Budget(batch_size=32).model_dump(mode="json")  # a job stored before the change
    assert Budget.model_validate(stored).batch() == 32
    assert Budget().model_dump(mode="json")["batch_size"] is None


def test_the_driver_asks_in_the_default_batches() -> None:
    spec = parse_job_spec({**SAMPLED, "budget": {"trials": 100, "exhaustive_limit": 0}})
    added: list[int] = []

    def on_add(trials: list[TrialRecord]) -> None:
        added.append(len(trials))

    result = run_search(spec, LocalExecutor(), ListSink(on_add=on_add))
    assert len(result.trials) == 100
    assert max(added) <= spec.budget.batch() == 4
    assert result.sampler["class"] == "ValidSetSampler"


def test_nsga2_population_follows_the_batch_and_generations_complete() -> None:
    _, info = make_sampler(SamplerSpec(name="nsga2"), batch=16)
    assert info["args"]["population_size"] == 16
    assert make_sampler(SamplerSpec(name="nsga2"), batch=2)[1]["args"]["population_size"] == 8
    sampler, _ = make_sampler(SamplerSpec(name="nsga2", seed=1), batch=8)
    spec = parse_job_spec(SAMPLED)
    study = make_study(spec.objectives, sampler)
    dist = optuna.distributions.CategoricalDistribution(list(range(10)))
    for _ in range(6):  # batches of 8 asked before any is told, as the driver does
        trials = [study.ask({"x": dist, "y": dist}) for _ in range(8)]
        for t in trials:
            study.tell(t, [float(t.params["x"]), float(9 - t.params["x"] + t.params["y"])])
    key = f"{type(sampler).__name__}:generation"
    generations = {t.system_attrs.get(key) for t in study.trials}
    assert max(g for g in generations if g is not None) >= 3
