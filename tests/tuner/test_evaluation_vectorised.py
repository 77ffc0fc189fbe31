"""A chunk of analytical training trials goes through the vectorised model in one call and
stores exactly what the per-configuration evaluator stores (bar the timing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from search_spaces.job_spec import TrainingJobSpec
from search_spaces.job_spec import parse_job_spec
from search_spaces.training_space import TrainingSpace
from tuner.evaluation import evaluate_batch
from tuner.kinds import job_kind
from tuner.training_kind import evaluate_training_analytical

SPEC: dict[str, Any] = {
    "model": "qwen3-30b-a3b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 32},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
    # a limit that some configurations break, so violations and constraints vary by trial
    "limits": {"max_memory_per_gpu_gib": 40},
}


def _spec() -> TrainingJobSpec:
    spec = parse_job_spec(SPEC)
    assert isinstance(spec, TrainingJobSpec)
    return spec


def _chunk(spec: TrainingJobSpec) -> list[dict[str, Any]]:
    """A chunk as the driver sends it: valid points (fitting and OOM), configurations the
    model rejects, and one that does not parse."""
    space = TrainingSpace(spec.model, spec.cluster, spec.workload)
    valid = [c.model_dump(mode="json") for c in space.enumerate(limit=4000)][::40]
    rejected = [{"tp": 3}, {"ep": 3}, {"micro_batch_size": 3}, {"vpp": 2}]
    return [*valid[:50], *rejected, {"tp": "two"}, *valid[50:]]


def _stored(outcome: dict[str, Any]) -> dict[str, Any]:
    """An outcome without what legitimately differs between two runs."""
    details = {k: v for k, v in outcome["details"].items() if k != "worker"}
    return {**{k: v for k, v in outcome.items() if k != "duration_s"}, "details": details}


def _one_by_one(spec: TrainingJobSpec, chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kind = job_kind("training")
    out = []
    for raw in chunk:
        try:
            config = kind.parse_config(raw)
        except ValueError:
            out.append(None)
            continue
        out.append(_stored(evaluate_training_analytical(spec, config).model_dump(mode="json")))
    return out


def test_a_chunk_stores_what_the_per_configuration_evaluator_stores() -> None:
    spec = _spec()
    chunk = _chunk(spec)
    assert "analytical" in job_kind("training").batch_evaluators
    got = evaluate_batch(json.dumps(spec.model_dump(mode="json")), chunk)
    expected = _one_by_one(spec, chunk)
    assert len(got) == len(chunk)
    outcomes = [_stored(o) for o in got]
    for i, (outcome, want) in enumerate(zip(outcomes, expected, strict=True)):
        if want is None:  # did not parse: the same validation message as before
            assert outcome["error"] and "tp" in outcome["error"]
            continue
        assert outcome == want, f"trial {i} ({chunk[i]}) differs"
    kinds = {
        "ok": sum(o["feasible"] for o in outcomes),
        "oom": sum(any("out of memory" in v for v in o["violations"]) for o in outcomes),
        "limit": sum(any("limit" in v for v in o["violations"]) for o in outcomes),
        "rejected": sum(bool(o["error"]) for o in outcomes),
    }
    assert all(kinds.values()), f"the chunk should mix every kind of outcome: {kinds}"
    assert all(o["duration_s"] > 0 and o["details"]["worker"] for o in got)


def test_a_crashing_batch_evaluator_falls_back_to_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(spec: Any, configs: list[Any]) -> list[Any]:
        raise RuntimeError("vectorised path broke")

    spec = _spec()
    chunk = _chunk(spec)[:60]
    monkeypatch.setitem(job_kind("training").batch_evaluators, "analytical", crash)
    got = [_stored(o) for o in evaluate_batch(json.dumps(spec.model_dump(mode="json")), chunk)]
    for outcome, want in zip(got, _one_by_one(spec, chunk), strict=True):
        if want is not None:
            assert outcome == want


def test_the_hybrid_evaluators_analytical_phase_is_vectorised_too() -> None:
    """A hybrid job's analytical chunks go through the batch path and store the same."""
    import tuner.measured_evaluators  # noqa: F401  (registers profile/hybrid/command)

    spec = parse_job_spec({**SPEC, "evaluator": {"type": "hybrid", "top_k": 2}})
    assert isinstance(spec, TrainingJobSpec)
    assert "hybrid" in job_kind("training").batch_evaluators
    chunk = _chunk(spec)[:20]
    got = [_stored(o) for o in evaluate_batch(json.dumps(spec.model_dump(mode="json")), chunk)]
    assert got == _one_by_one(spec, chunk)
