"""Trials, Pareto fronts, recommendations and the evaluation cache, on every backend."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import session_scope
from results.records import Recommendation
from results.repository import JobRepository
from tests.results.helpers import SPEC
from tests.results.helpers import trial


@pytest.fixture
def repo(factory: sessionmaker[Session]) -> Any:
    """A repository in one open session (committed at the end of the test)."""
    with session_scope(factory) as session:
        yield JobRepository(session)


@pytest.fixture
def job_id(repo: JobRepository) -> str:
    return repo.create_job(SPEC, "job", "training").id


def test_add_trials_counts_and_skips_known_numbers(repo: JobRepository, job_id: str) -> None:
    first = [
        trial(0),
        trial(1, "failed", {}, feasible=False, error="OOM in the evaluator"),
        trial(2, "pruned", {}, feasible=False, violations=["memory 91 GiB > 80 GiB"]),
        trial(3, feasible=False, violations=["ttft 2 s > 1 s"]),
        trial(3, metrics={"tokens_per_s": 99.0}),  # same number in one call: first wins
    ]
    assert repo.add_trials(job_id, first) == 4
    # A resumed job re-sends 2 and 3: only 4 and 5 are new.
    assert repo.add_trials(job_id, [trial(2), trial(3), trial(4), trial(5)]) == 2
    assert repo.add_trials(job_id, []) == 0
    job = repo.get_job(job_id)
    assert job is not None
    counters = (job.trials_done, job.trials_failed, job.trials_pruned, job.trials_infeasible)
    assert counters == (6, 1, 1, 2)
    stored = repo.all_trials(job_id)
    assert [t.number for t in stored] == [0, 1, 2, 3, 4, 5]
    assert stored[3] == first[3]
    assert stored[1].error == "OOM in the evaluator"
    assert stored[2].violations == ["memory 91 GiB > 80 GiB"]


def test_add_trials_refuses_non_finite_metrics(repo: JobRepository, job_id: str) -> None:
    with pytest.raises(ValueError, match=r"trial 7: metric\(s\) \['ttft_ms'\]"):
        repo.add_trials(job_id, [trial(7, metrics={"ttft_ms": math.inf})])
    assert repo.count_trials(job_id) == 0


def test_bulk_insert_is_one_fast_call(repo: JobRepository, job_id: str) -> None:
    batch = [trial(n, details={"breakdown": {"compute": 0.5}}) for n in range(3000)]
    started = time.perf_counter()
    assert repo.add_trials(job_id, batch) == 3000
    assert time.perf_counter() - started < 10  # ~0.1 s here; far slower means row-at-a-time
    assert repo.count_trials(job_id) == 3000
    assert repo.add_trials(job_id, batch) == 0


def test_list_trials_pages_filters_and_after(repo: JobRepository, job_id: str) -> None:
    states = ["complete", "failed", "pruned"]
    repo.add_trials(job_id, [trial(n, states[n % 3]) for n in range(10)])
    numbers = lambda ts: [t.number for t in ts]  # noqa: E731
    assert numbers(repo.list_trials(job_id)) == list(range(10))
    assert numbers(repo.list_trials(job_id, limit=3, offset=3)) == [3, 4, 5]
    assert numbers(repo.list_trials(job_id, descending=True, limit=2)) == [9, 8]
    assert numbers(repo.list_trials(job_id, after=6)) == [7, 8, 9]
    assert numbers(repo.list_trials(job_id, state="failed")) == [1, 4, 7]
    assert numbers(repo.list_trials(job_id, state="complete", after=3, limit=1)) == [6]
    assert repo.count_trials(job_id) == 10
    assert repo.count_trials(job_id, "pruned") == 3
    with pytest.raises(ValueError, match="unknown trial state"):
        repo.list_trials(job_id, state="done")


def test_sort_by_a_metric_in_sql(repo: JobRepository, job_id: str) -> None:
    values = {0: 5.0, 1: -1.5, 2: 120.25, 3: 1e-3, 4: 7.0}
    records = [trial(n, metrics={"tokens_per_s": v, "mfu": 0.5}) for n, v in values.items()]
    records.append(trial(5, "failed", {}))  # no metric: last in both directions
    records.append(trial(6, metrics={"tokens_per_s": 7.0}))  # tie with 4: by number
    repo.add_trials(job_id, records)
    ascending = repo.list_trials(job_id, order_by="tokens_per_s")
    assert [t.number for t in ascending] == [1, 3, 0, 4, 6, 2, 5]
    descending = repo.list_trials(job_id, order_by="tokens_per_s", descending=True)
    assert [t.number for t in descending] == [2, 4, 6, 0, 3, 1, 5]
    page = repo.list_trials(job_id, order_by="tokens_per_s", descending=True, limit=2, offset=1)
    assert [t.number for t in page] == [4, 6]
    with pytest.raises(ValueError, match="cannot sort"):
        repo.list_trials(job_id, order_by="x'); drop table trials; --")


def test_keys_and_all_trials(repo: JobRepository, job_id: str) -> None:
    repo.add_trials(job_id, [trial(0, key="a"), trial(1, key="b"), trial(2, key="a")])
    assert repo.trial_keys(job_id) == {"a": 0, "b": 1}
    assert [t.config_key for t in repo.all_trials(job_id)] == ["a", "b", "a"]
    assert repo.trial_keys("0" * 32) == {}
    assert repo.get_trial(job_id, 1) == trial(1, key="b")
    assert repo.get_trial(job_id, 3) is None


def test_find_cached_metrics(repo: JobRepository, job_id: str) -> None:
    other = repo.create_job(SPEC, "other", "training").id
    repo.add_trials(job_id, [trial(0, key="a", metrics={"x": 1.0}), trial(1, "failed", key="b")])
    repo.add_trials(other, [trial(0, key="a", metrics={"x": 2.0})])  # newer: wins
    repo.add_trials(other, [trial(1, key="c", evaluator="profile")])
    found = repo.find_cached_metrics(["a", "b", "c", "zz"], "analytical")
    assert set(found) == {"a"}
    assert found["a"].metrics == {"x": 2.0}
    assert set(repo.find_cached_metrics(["c"], "profile")) == {"c"}
    assert repo.find_cached_metrics([], "analytical") == {}


def test_find_cached_metrics_many_keys(repo: JobRepository, job_id: str) -> None:
    repo.add_trials(job_id, [trial(n) for n in range(1200)])
    keys = [f"key-{n}" for n in range(0, 2400, 2)]
    assert len(repo.find_cached_metrics(keys, "analytical")) == 600


def test_pareto_replace_and_get(repo: JobRepository, job_id: str) -> None:
    repo.add_trials(job_id, [trial(n) for n in range(6)])
    repo.replace_pareto(job_id, [4, 1, 3, 1])
    front = repo.get_pareto(job_id)
    assert [p.trial_number for p in front] == [4, 1, 3]
    assert front[0].config == {"tp": 5, "pp": 1}
    assert front[0].metrics == {"tokens_per_s": 4.0}
    repo.replace_pareto(job_id, [5, 0])
    assert [p.trial_number for p in repo.get_pareto(job_id)] == [5, 0]
    with pytest.raises(ValueError, match=r"no trial\(s\) \[9\]"):
        repo.replace_pareto(job_id, [0, 9])
    assert [p.trial_number for p in repo.get_pareto(job_id)] == [5, 0]
    repo.replace_pareto(job_id, [])
    assert repo.get_pareto(job_id) == []


def test_recommendation_round_trip(repo: JobRepository, job_id: str) -> None:
    assert repo.get_recommendation(job_id) is None
    rec = Recommendation(
        trial_number=3,
        config={"tp": 8, "pp": 2, "sequence_parallel": True, "sharding": "zero1"},
        metrics={"tokens_per_s_per_gpu": 3012.5, "memory_per_gpu_gib": 71.25},
        reason="highest throughput that fits with 10% memory headroom",
        details={"runner_up": {"trial_number": 5, "loss": [0.1, None]}},
    )
    repo.set_recommendation(job_id, rec)
    assert repo.get_recommendation(job_id) == rec
    newer = rec.model_copy(update={"trial_number": 4, "reason": "re-ranked"})
    repo.set_recommendation(job_id, newer)
    assert repo.get_recommendation(job_id) == newer


def test_json_round_trip(factory: sessionmaker[Session]) -> None:
    """Floats keep every digit, bools stay bools, nesting and unicode survive, across a
    commit (so the values really come back from the database, not from memory).

    JSONB keeps numbers as decimals: an integral float too large for a fraction digit
    (6.02e23) comes back from free-form JSON as an equal-valued int; typed fields
    (``metrics``) read it back as the same float.
    """
    payload: dict[str, Any] = {
        "floats": [0.1, 1 / 3, -2.5e-12, 1.5e-300, 0.0, 123456789.125],
        "flags": {"on": True, "off": False, "none": None},
        "nested": {"a": {"b": {"c": [1, [2, {"d": "é✓"}]]}}},
        "int": 2**53,
    }
    metrics = {"mfu": 0.41234567890123457, "big": 6.02214076e23, "max": 1.7976931348623157e308}
    with session_scope(factory) as session:
        repo = JobRepository(session)
        job_id = repo.create_job(payload, "json", "training").id
        repo.add_trials(job_id, [trial(0, metrics=metrics, details=payload)])
        repo.update_best(job_id, payload)
    with session_scope(factory) as session:
        repo = JobRepository(session)
        job = repo.get_job(job_id)
        assert job is not None and job.spec == payload and job.best == payload
        (stored,) = repo.all_trials(job_id)
    assert stored.details == payload
    assert stored.metrics == metrics
    assert stored.feasible is True
    assert isinstance(stored.details["flags"]["on"], bool)
    assert [type(v) for v in stored.details["floats"]] == [float] * 6
