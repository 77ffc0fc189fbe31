"""The profile and hybrid evaluators of inference jobs in-process: they are registered for the
inference kind, settings that only the other kind's profile reads are refused with the field
and the fix, and a measured trial fails its SLO on the measured TPOT."""

from __future__ import annotations

from typing import Any

import pytest

from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.kinds import UnsupportedError
from tuner.kinds import evaluator_for
from tuner.kinds import evaluator_version

SERVING: dict[str, Any] = {
    "kind": "inference",
    "model": {
        "name": "tiny",
        "num_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "num_kv_heads": 2,
        "vocab_size": 1024,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 1},
    "workload": {"input_len": 64, "output_len": 16, "concurrency": 2},
    "space": {
        "backend": ["vllm"],
        "mode": ["aggregated"],
        "tp": [1],
        "pp": [1],
        "ep": [1],
        "attention_dp": [1],
        "weight_dtype": ["bf16"],
        "kv_dtype": ["bf16"],
    },
}
TRAINING: dict[str, Any] = {
    **{k: SERVING[k] for k in ("model", "cluster")},
    "workload": {"seq_len": 64, "global_batch_size": 8},
}
FAST = {"warmup_steps": 1, "timed_steps": 2, "isolate": False, "device": "cpu"}


@pytest.mark.parametrize("kind", ["profile", "hybrid"])
def test_inference_jobs_offer_profile_and_hybrid(kind: str) -> None:
    spec = parse_job_spec({**SERVING, "evaluator": {"type": kind, **FAST}})
    evaluator_for(spec)  # registered, settings accepted
    assert evaluator_version(spec).startswith(kind + "@")
    assert "analytical-inference" in evaluator_version(spec)


@pytest.mark.parametrize(
    ("doc", "setting", "hint"),
    [
        (SERVING, {"max_hidden_size": 64}, "max_context_len"),
        (TRAINING, {"max_context_len": 512}, "hidden size"),
        (TRAINING, {"prefill_chunk_tokens": 256}, "hidden size"),
    ],
)
def test_settings_for_the_other_kind_are_refused(
    doc: dict[str, Any], setting: dict[str, int], hint: str
) -> None:
    spec = parse_job_spec({**doc, "evaluator": {"type": "profile", **setting}})
    with pytest.raises(UnsupportedError) as err:
        evaluator_for(spec)
    assert f"evaluator.{next(iter(setting))}" in str(err.value) and hint in str(err.value)


def test_measured_tpot_decides_the_slo() -> None:
    doc = {**SERVING, "evaluator": {"type": "profile", **FAST}}
    doc["workload"] = {**SERVING["workload"], "tpot_ms": 1e-3}  # no device decodes in 1 us
    result = run_search(parse_job_spec(doc), LocalExecutor(), ListSink())
    (trial,) = result.trials
    assert trial.state == "complete" and not trial.feasible
    assert any(v.startswith("measured TPOT") for v in trial.violations)
    assert trial.details["constraints"]["tpot_slo_excess_ms"] == pytest.approx(
        trial.metrics["tpot_ms"] - 1e-3
    )
    assert trial.details["measured"] == trial.metrics
