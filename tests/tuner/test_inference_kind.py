"""The inference job kind end to end: search, SLO-aware recommendation, estimate, launch files."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from search_spaces.inference_config import InferenceConfig
from search_spaces.job_spec import InferenceJobSpec
from search_spaces.job_spec import parse_job_spec
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.estimate import estimate_spec
from tuner.exporters import export
from tuner.inference_exporters import sglang_args
from tuner.inference_exporters import trtllm_args
from tuner.inference_exporters import trtllm_options
from tuner.inference_exporters import vllm_args
from tuner.inference_kind import evaluate_inference_analytical
from tuner.kinds import job_kind

BASE: dict[str, Any] = {
    "kind": "inference",
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 4},
    "workload": {
        "input_len": 2000,
        "output_len": 400,
        "concurrency": 32,
        "ttft_ms": 400,
        "tpot_ms": 12,
    },
    "objectives": ["min:cost_per_million_tokens_usd", "min:tpot_ms"],
    "space": {"weight_dtype": ["bf16", "fp8"], "kv_dtype": ["fp8"], "backend": ["vllm", "trtllm"]},
}
DISAGG = {
    "mode": "disaggregated",
    "weight_dtype": "fp8",
    "prefill": {"tp": 1, "workers": 2},
    "decode": {"tp": 2},
}


def spec_of(**changes: Any) -> InferenceJobSpec:
    spec = parse_job_spec({**BASE, **changes})
    assert isinstance(spec, InferenceJobSpec)
    return spec


def test_search_recommends_the_cheapest_config_meeting_the_slos():
    spec = spec_of()
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.plan.mode == "exhaustive" and len(result.trials) == result.plan.space_size
    feasible = [t for t in result.trials if t.feasible]
    assert feasible and len(feasible) < len(result.trials)  # some miss the SLOs
    rec = result.recommendation
    assert rec is not None
    assert rec.metrics["ttft_ms"] <= 400 and rec.metrics["tpot_ms"] <= 12
    assert rec.metrics["cost_per_million_tokens_usd"] == min(
        t.metrics["cost_per_million_tokens_usd"] for t in feasible
    )
    other = rec.details["other_mode"]
    assert other is not None and other["mode"] != rec.config["mode"]
    assert other["gain"]["cost_per_million_tokens_usd"] >= 0
    assert "alternative" in rec.reason
    for t in result.trials:  # SLO misses are Optuna constraints (<= 0 feasible)
        c = t.details["constraints"]
        assert (c["ttft_slo_excess_ms"] <= 0 and c["tpot_slo_excess_ms"] <= 0) or not t.feasible


def test_sampled_search_runs_with_optuna_and_constraints():
    spec = spec_of(space=None, budget={"trials": 60, "batch_size": 20, "exhaustive_limit": 10})
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.plan.mode == "sampled" and 0 < len(result.trials) <= 60
    assert result.recommendation is not None


def test_unreachable_slos_recommend_the_closest_and_say_so():
    workload = {**BASE["workload"], "ttft_ms": 1, "tpot_ms": 1}
    result = run_search(spec_of(workload=workload), LocalExecutor(), ListSink())
    rec = result.recommendation
    assert rec is not None and not any(t.feasible for t in result.trials)
    assert rec.reason.startswith("no configuration meets the SLOs")


def test_evaluator_outcome_reports_violations_and_constraints():
    spec = spec_of(workload={**BASE["workload"], "tpot_ms": 2})
    out = evaluate_inference_analytical(spec, InferenceConfig(tp=1))
    assert not out.feasible and any("TPOT" in v and "SLO" in v for v in out.violations)
    assert out.constraints["tpot_slo_excess_ms"] > 0 >= out.constraints["memory_excess_gib"]
    assert {"breakdown_ms", "memory_breakdown_gib", "batch_size"} <= set(out.details)
    bad = evaluate_inference_analytical(spec, InferenceConfig(tp=8))  # 8 GPUs on a 4-GPU cluster
    assert bad.error and "cluster has 4" in bad.error


def test_estimate_answers_design_fields_and_errors_as_sentences():
    doc = {**BASE, "config": {"tp": 2, "weight_dtype": "fp8", "kv_dtype": "fp8"}}
    out = estimate_spec(doc)
    fields = {
        "output_tokens_per_s",
        "output_tokens_per_s_per_gpu",
        "tokens_per_s_per_user",
        "ttft_ms",
        "tpot_ms",
        "batch_size",
        "memory_per_gpu_gib",
        "fits",
        "cost_per_million_tokens_usd",
        "quality_loss_pct",
        "breakdown",
    }
    assert fields <= set(out) and out["kind"] == "inference" and out["fits"]
    assert out["config"]["tp"] == 2
    invalid = estimate_spec({**BASE, "config": {"tp": 3}})
    assert "tp_divides_heads" in invalid["error"]
    unknown = estimate_spec({**BASE, "config": {"tensor_parallel": 2}})
    assert "config.tensor_parallel" in unknown["error"]


# -- launch files ----------------------------------------------------------------------------


def _commands(text: str, program: str) -> list[list[str]]:
    """Each command line of a launch script (continuations joined), split like a shell."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split("CUDA_VISIBLE_DEVICES=", 1)[-1]
        words = shlex.split(line.rstrip("&").strip(), comments=True) if line.strip() else []
        if program in words:
            out.append(words[words.index(program) :])
    return out


def _flag(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def test_vllm_commands_spell_the_flags():
    spec = spec_of(model="qwen3-30b-a3b", cluster={"gpu": "h100-sxm-80gb", "num_gpus": 8})
    config = InferenceConfig(
        tp=2, attention_dp=2, ep=4, weight_dtype="fp8", kv_dtype="fp8", max_batch_size=64
    )
    text = export("vllm", spec, config.model_dump(mode="json"), {"ttft_ms": 1.0})
    commands = _commands(text, "vllm")
    assert len(commands) == 2  # two workers of 4 GPUs
    words = commands[0]
    assert words[:3] == ["vllm", "serve", "Qwen/Qwen3-30B-A3B"]
    assert (
        _flag(words, "--tensor-parallel-size") == "2"
        and _flag(words, "--data-parallel-size") == "2"
    )
    assert "--enable-expert-parallel" in words and _flag(words, "--kv-cache-dtype") == "fp8"
    assert _flag(words, "--quantization") == "fp8" and _flag(words, "--max-num-seqs") == "32"
    assert _flag(words, "--max-model-len") == "2400"


def test_disaggregated_exports_one_command_per_pool_worker():
    spec = spec_of()
    config = InferenceConfig.model_validate(DISAGG)
    vllm = _commands(export("vllm", spec, config.model_dump(mode="json"), {}), "vllm")
    assert len(vllm) == 3  # 2 prefill workers + 1 decode worker
    assert all("NixlConnector" in _flag(w, "--kv-transfer-config") for w in vllm)
    sglang = _commands(export("sglang", spec, config.model_dump(mode="json"), {}), "python")
    servers = [w for w in sglang if "sglang.launch_server" in w]
    assert [_flag(w, "--disaggregation-mode") for w in servers] == ["prefill", "prefill", "decode"]
    router = [w for w in sglang if "sglang_router.launch_router" in w]
    assert (
        len(router) == 1 and router[0].count("--prefill") == 2 and router[0].count("--decode") == 1
    )
    trt = export("trtllm", spec, config.model_dump(mode="json"), {})
    assert len(_commands(trt, "trtllm-serve")) == 4  # three workers and the disaggregated router
    assert "trtllm-serve disaggregated -c disagg_config.yaml" in trt
    options = list(
        yaml.safe_load_all(export("trtllm_options", spec, config.model_dump(mode="json"), {}))
    )
    assert [o["cache_transceiver_config"]["backend"] for o in options] == ["UCX", "UCX"]


def test_sglang_and_trtllm_attention_dp_layouts():
    spec = spec_of(model="deepseek-v3", cluster={"gpu": "h200-141gb", "num_gpus": 8})
    sg = InferenceConfig(
        backend="sglang", tp=2, attention_dp=4, ep=8, weight_dtype="fp8", kv_dtype="fp8"
    )
    words = sglang_args(spec, sg, "aggregated", _pool(sg), 8000)
    assert words[:3] == ["python", "-m", "sglang.launch_server"]
    assert (
        _flag(words, "--tp") == "8"
        and _flag(words, "--dp") == "4"
        and _flag(words, "--ep-size") == "8"
    )
    assert "--enable-dp-attention" in words and _flag(words, "--kv-cache-dtype") == "fp8_e4m3"
    trt = InferenceConfig(
        backend="trtllm", tp=1, attention_dp=8, ep=8, weight_dtype="fp8", kv_dtype="fp8"
    )
    words = trtllm_args(spec, trt, "aggregated", _pool(trt), 8000)
    assert words[:2] == ["trtllm-serve", "deepseek-ai/DeepSeek-V3"]
    assert (
        _flag(words, "--tp_size") == "8"
        and _flag(words, "--ep_size") == "8"
        and _flag(words, "--pp_size") == "1"
    )
    assert _flag(words, "--extra_llm_api_options") == "extra_llm_api_options.yaml"
    options = trtllm_options(trt, "aggregated", _pool(trt))
    assert options["enable_attention_dp"] is True and options["kv_cache_config"]["dtype"] == "fp8"
    vl = vllm_args(
        spec,
        InferenceConfig(tp=8, weight_dtype="fp8"),
        "aggregated",
        _pool(InferenceConfig(tp=8)),
        8000,
    )
    assert "--enable-expert-parallel" not in vl and "--data-parallel-size" not in vl


def _pool(config: InferenceConfig) -> Any:
    from tuner.inference_exporters import _shapes

    return _shapes(config)[0][1]


def test_kind_is_registered_with_every_exporter():
    kind = job_kind("inference")
    assert set(kind.exporters) == {"json", "yaml", "vllm", "sglang", "trtllm", "trtllm_options"}
    assert kind.recommend is not None and "analytical" in kind.evaluators
    with pytest.raises(ValueError, match="unknown format 'megatron'"):
        export("megatron", spec_of(), InferenceConfig().model_dump(mode="json"), {})
