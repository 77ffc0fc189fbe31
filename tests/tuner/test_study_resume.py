"""Resuming an inference job restores every stored trial into the Optuna study, disaggregated
points (nested prefill/decode pools) included, with their params and values."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from results.records import TrialRecord
from search_spaces.job_spec import InferenceJobSpec
from search_spaces.job_spec import parse_job_spec
from tuner import driver
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import build_space
from tuner.driver import run_search
from tuner.study import make_sampler
from tuner.study import make_study
from tuner.study import rehydrate

SPEC: dict[str, Any] = {
    "kind": "inference",
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
    "workload": {"input_len": 2000, "output_len": 400, "concurrency": 64, "ttft_ms": 800},
    "objectives": ["max:output_tokens_per_s_per_gpu", "min:tpot_ms"],
    "space": {
        "mode": ["aggregated", "disaggregated"],
        "backend": ["vllm", "trtllm"],
        "weight_dtype": ["fp8"],
        "kv_dtype": ["fp8"],
        "tp": [1, 2, 4],
        "prefill_tp": [1, 2],
        "prefill_workers": [1, 2, 3],
        "decode_tp": [1, 2, 4],
    },
    "budget": {"trials": 30, "batch_size": 10, "exhaustive_limit": 5},
}


def _spec() -> InferenceJobSpec:
    spec = parse_job_spec(SPEC)
    assert isinstance(spec, InferenceJobSpec)
    return spec


def _values(t: TrialRecord, spec: InferenceJobSpec) -> list[float] | None:
    return [t.metrics[o.metric] for o in spec.objectives] if t.state == "complete" else None


@pytest.fixture(scope="module")
def stored() -> tuple[InferenceJobSpec, list[TrialRecord]]:
    spec = _spec()
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.plan.mode == "sampled"
    return spec, result.trials


def test_stored_trials_cover_both_modes(stored: tuple[InferenceJobSpec, list[TrialRecord]]):
    _, trials = stored
    modes = {t.config["mode"] for t in trials}
    assert modes == {"aggregated", "disaggregated"}
    assert any(t.config.get("prefill") for t in trials)  # nested pools, as stored


def test_rehydrate_restores_every_trial_with_params_and_values(
    stored: tuple[InferenceJobSpec, list[TrialRecord]],
):
    spec, trials = stored
    space = build_space(spec)
    dists = space.to_optuna()
    study = make_study(spec.objectives, make_sampler(spec.sampler, space=space)[0])
    for t in trials:
        assert rehydrate(study, dists, t.config, _values(t, spec), None, space)
    restored = study.get_trials(deepcopy=False)
    assert len(restored) == len(trials)
    for t, frozen in zip(trials, restored, strict=True):
        assert set(frozen.params) == set(dists)  # one value per distribution, like live trials
        assert space.decode(frozen.params).model_dump(mode="json") == t.config
        assert frozen.values == _values(t, spec)
    disagg = [f for f, t in zip(restored, trials, strict=True) if t.config["mode"] != "aggregated"]
    assert disagg and all(f.params["mode"] == "disaggregated" for f in disagg)


def test_points_outside_the_space_are_skipped(stored: tuple[InferenceJobSpec, list[TrialRecord]]):
    spec, trials = stored
    narrow = parse_job_spec({**SPEC, "space": {**SPEC["space"], "decode_tp": [1, 2]}})
    space = build_space(narrow)
    study = make_study(spec.objectives, make_sampler(spec.sampler, space=space)[0])
    wide = [t for t in trials if (t.config.get("decode") or {}).get("tp") == 4]
    added = [rehydrate(study, space.to_optuna(), t.config, None, None, space) for t in wide]
    assert not any(added) and not study.trials


def test_resume_hands_the_sampler_every_stored_trial(
    stored: tuple[InferenceJobSpec, list[TrialRecord]], monkeypatch: pytest.MonkeyPatch
):
    """The real resume path: run_search with the stored trials; the study it builds (kept by
    wrapping make_study) holds them all before any new trial."""
    spec, trials = stored
    studies: list[optuna.Study] = []

    def keep(*args: Any) -> optuna.Study:
        study = make_study(*args)
        studies.append(study)
        return study

    monkeypatch.setattr(driver, "make_study", keep)
    resumed = parse_job_spec({**SPEC, "budget": {**SPEC["budget"], "trials": len(trials) + 10}})
    assert isinstance(resumed, InferenceJobSpec)
    sink = ListSink()
    result = run_search(resumed, LocalExecutor(), sink, existing=trials)
    (study,) = studies
    complete = [t for t in trials if t.state == "complete"]
    restored = study.get_trials(deepcopy=False)[: len(trials)]
    assert [f.values for f in restored] == [_values(t, spec) for t in trials]
    assert sum(f.state == optuna.trial.TrialState.COMPLETE for f in restored) == len(complete)
    assert {t.config_key for t in sink.trials}.isdisjoint({t.config_key for t in trials})
    assert len(result.trials) > len(trials)
