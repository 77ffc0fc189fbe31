"""Evaluator settings in the job spec (a union on ``type``), how each evaluator's trials are
dispatched, and the hybrid phase in-process: predicted and measured side by side, re-ranked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from search_spaces.evaluators import AnalyticalEvaluatorSpec
from search_spaces.evaluators import CommandEvaluatorSpec
from search_spaces.evaluators import HybridEvaluatorSpec
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.job_spec import error_locations
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import build_space
from tuner.driver import run_search
from tuner.kinds import UnsupportedError
from tuner.kinds import dispatch_for

PINNED: dict[str, Any] = {"sharding": ["zero1"], "sequence_parallel": [False]}

TINY: dict[str, Any] = {
    "model": {
        "name": "tiny",
        "num_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 4,
        "vocab_size": 1024,
    },
    "cluster": {"gpu": "local-cpu", "num_gpus": 2},
    "workload": {"seq_len": 64, "global_batch_size": 8},
}


def spec_of(**changes: Any) -> TrainingJobSpec:
    spec = parse_job_spec({**TINY, **changes})
    assert isinstance(spec, TrainingJobSpec)
    return spec


@pytest.mark.parametrize(
    ("raw", "cls"),
    [
        (None, AnalyticalEvaluatorSpec),
        ("analytical", AnalyticalEvaluatorSpec),
        ("profile", ProfileEvaluatorSpec),
        ({"type": "hybrid", "top_k": 2}, HybridEvaluatorSpec),
        ({"type": "command", "command": "run {tp}"}, CommandEvaluatorSpec),
    ],
)
def test_evaluator_union_keeps_bare_strings_working(raw: Any, cls: type) -> None:
    spec = spec_of() if raw is None else spec_of(evaluator=raw)
    assert type(spec.evaluator) is cls
    assert spec.evaluator.type == cls.model_fields["type"].default
    again = parse_job_spec(spec.model_dump(mode="json"))
    assert again.evaluator == spec.evaluator


def test_evaluator_errors_name_the_field_without_the_union_tag() -> None:
    with pytest.raises(ValidationError) as err:
        spec_of(evaluator={"type": "profile", "timed_steps": 0, "device": "tpu"})
    fields = {loc for loc, _ in error_locations(err.value)}
    assert fields == {"evaluator.timed_steps", "evaluator.device"}


def test_measuring_evaluators_run_one_trial_per_task() -> None:
    assert dispatch_for(spec_of()).chunk_size == 128
    assert dispatch_for(spec_of(evaluator="hybrid")).chunk_size == 128
    profile = dispatch_for(spec_of(evaluator="profile"))
    assert profile.chunk_size == 1 and profile.task_options is not None
    assert profile.task_options(spec_of(evaluator="profile"), {"CPU": 4})["num_gpus"] == 0
    assert profile.task_options(spec_of(evaluator="profile"), {"CPU": 4, "GPU": 2})["num_gpus"] == 1
    command = spec_of(evaluator={"type": "command", "command": "x", "resources": {"num_gpus": 2}})
    options = dispatch_for(command).task_options
    assert dispatch_for(command).chunk_size == 1 and options is not None
    assert options(command, {})["num_gpus"] == 2


def test_unknown_command_placeholders_are_refused_before_any_trial() -> None:
    with pytest.raises(UnsupportedError, match=r"\{tensor_parallel\}.*available:.*micro_batch"):
        build_space(spec_of(evaluator={"type": "command", "command": "run {tensor_parallel}"}))


def test_command_trials_read_metrics_and_report_failures_in_process() -> None:
    script = (
        "import json, sys; mb = int(sys.argv[1]); "
        "sys.exit(5) if mb == 4 else print(json.dumps(dict("
        "tokens_per_s_per_gpu=1000.0 * mb, memory_per_gpu_gib=0.1 * mb)))"
    )
    command = f"{sys.executable} -c '{script}' {{micro_batch_size}}"
    spec = spec_of(
        evaluator={"type": "command", "command": command, "timeout_s": 60},
        space={"micro_batch_size": [1, 2, 4], "tp": [1], "recompute": ["none"], **PINNED},
    )
    result = run_search(spec, LocalExecutor(), ListSink())
    by_mb = {t.config["micro_batch_size"]: t for t in result.trials}
    assert by_mb[2].state == "complete" and by_mb[2].metrics["tokens_per_s_per_gpu"] == 2000
    assert by_mb[2].details["predicted"]["tokens_per_s_per_gpu"] > 0  # the model beside it
    assert by_mb[4].state == "failed" and by_mb[4].error.startswith("exit: exit code 5")
    assert result.recommendation is not None
    assert result.recommendation.config["micro_batch_size"] == 2


@pytest.mark.slow
def test_hybrid_phase_profiles_the_front_and_reranks_by_measurement() -> None:
    spec = spec_of(
        evaluator={
            "type": "hybrid",
            "top_k": 2,
            "isolate": False,
            "warmup_steps": 1,
            "timed_steps": 2,
            "device": "cpu",
        },
        space={"micro_batch_size": [1, 2, 4], "recompute": ["none", "full"], "tp": [1, 2]},
    )
    sink = ListSink()
    result = run_search(spec, LocalExecutor(), sink)
    profiled = [t for t in result.trials if t.evaluator.startswith("profile@")]
    assert len(profiled) == 2 and all(t in sink.trials for t in profiled)
    for t in profiled:
        assert t.state == "complete"
        predicted = next(p for p in result.trials if p.number == t.details["predicted_trial"])
        assert t.details["predicted"] == predicted.metrics
        assert t.details["measured"] == t.metrics
        assert t.config_key == predicted.config_key
    summary = result.summary["hybrid"]
    assert summary["profiled"] == 2 and summary["ranked_by"] == "measured"
    assert summary["prediction_error"]["step_time_s"]["n"] == 2
    assert {t.number for t in result.front} <= {t.number for t in profiled}
    assert result.recommendation is not None
    assert result.recommendation.trial_number in {t.number for t in profiled}


def test_command_evaluator_serves_inference_jobs_too() -> None:
    script = (
        "import json, sys; tp = int(sys.argv[1]); "
        "print(json.dumps(dict(output_tokens_per_s_per_gpu=100.0 / tp, tpot_ms=20.0 / tp)))"
    )
    spec = parse_job_spec(
        {
            "kind": "inference",
            "model": "llama-3.1-8b",
            "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 4},
            "workload": {"input_len": 1000, "output_len": 200, "concurrency": 8},
            "space": {"tp": [1, 2], "backend": ["vllm"], "mode": ["aggregated"]},
            "evaluator": {
                "type": "command",
                "command": f"{sys.executable} -c '{script}' {{tp}} {{input_len}} {{backend}}",
            },
        }
    )
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.trials and all(t.state == "complete" for t in result.trials)
    for t in result.trials:
        assert t.metrics["tpot_ms"] == 20.0 / t.config["tp"]
        assert isinstance(t.details["predicted"], dict)  # the serving model's, when it answers


def test_a_missing_or_mismatched_hardware_profile_fails_the_job(tmp_path: Path) -> None:
    from cost_models.profiling.hardware_profile import HardwareProfile
    from results.db import make_engine
    from results.db import make_session_factory
    from results.db import session_scope
    from results.db import upgrade_to_head
    from tuner.hardware_profiles import store_profile
    from tuner.local_job import run_local_job

    db = f"sqlite:///{tmp_path / 'j.db'}"
    doc = {**TINY, "evaluator": {"type": "analytical", "hardware_profile": "nowhere"}}
    with pytest.raises(ValueError, match="no stored hardware profile named 'nowhere'"):
        run_local_job(doc, parse_job_spec(doc), db_url=db, executor_kind="local")
    engine = make_engine(db)
    upgrade_to_head(engine)
    cpu_profile = HardwareProfile(
        name="cpu-only",
        device="cpu",
        device_kind="cpu",
        driver_version="k",
        library_versions={},
        host="h",
        threads=1,
        compute_dtype="bfloat16",
    )
    with session_scope(make_session_factory(engine)) as session:
        store_profile(session, cpu_profile, fit=None)
    engine.dispose()
    gpu_doc = {
        **TINY,
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
        "evaluator": {"type": "analytical", "hardware_profile": "cpu-only"},
    }
    with pytest.raises(ValueError, match="measured on cpu"):
        run_local_job(gpu_doc, parse_job_spec(gpu_doc), db_url=db, executor_kind="local")
