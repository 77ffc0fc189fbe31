"""Inference search space: the config type, validity rules, enumeration, counts, Optuna view."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from pydantic import ValidationError

from search_spaces.catalog import load_model
from search_spaces.inference_config import INFERENCE_KNOBS
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_rules import RULES
from search_spaces.inference_space import InferenceSpace
from search_spaces.inference_space import default_knobs
from search_spaces.job_spec import InferenceJobSpec
from search_spaces.job_spec import parse_job_spec
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import InferenceWorkload

WORKLOAD = InferenceWorkload(input_len=2000, output_len=500, concurrency=64)
DISAGG: dict[str, Any] = {
    "mode": "disaggregated",
    "prefill": {"tp": 2, "workers": 2},
    "decode": {"tp": 4, "workers": 1},
}


def space(model: str = "llama-3.1-70b", gpu: str = "h200-141gb", n: int = 8, **knobs: Any):
    cluster = ClusterSpec(gpu=gpu, num_gpus=n)
    return InferenceSpace(load_model(model), cluster, WORKLOAD, knobs or None)


# -- the config ------------------------------------------------------------------------------


def test_config_defaults_key_and_flat_round_trip():
    agg = InferenceConfig(tp=4, weight_dtype="fp8")
    assert (
        agg.weight_dtype == DType.fp8
        and agg.key() == InferenceConfig(tp=4, weight_dtype="fp8").key()
    )
    assert agg.key() != InferenceConfig(tp=2, weight_dtype="fp8").key()
    dis = InferenceConfig.model_validate(DISAGG)
    for config in (agg, dis):
        flat = config.to_flat()
        assert set(flat) == set(INFERENCE_KNOBS)
        assert InferenceConfig.from_flat(flat) == config
    assert dis.gpus_used(8) == 2 * 2 + 4
    assert agg.workers(8) == 2 and agg.gpus_used(8) == 8


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mode": "disaggregated"}, "needs both a prefill and a decode pool"),
        ({"prefill": {"tp": 2}, "decode": {"tp": 2}}, "apply only to mode=disaggregated"),
        ({**DISAGG, "tp": 4}, "set tp per pool"),
        ({"weight_dtype": "fp32"}, "use one of"),
        ({"kv_dtype": "int8"}, "use one of"),
        ({"backend": "tgi"}, "vllm"),
    ],
)
def test_config_rejects_inconsistent_points(data, message):
    with pytest.raises(ValidationError, match=message):
        InferenceConfig.model_validate(data)


def test_job_spec_parses_config_and_checks_space_knobs():
    base = {
        "kind": "inference",
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 4},
    }
    base["workload"] = {"input_len": 100, "output_len": 100}
    spec = parse_job_spec(
        {**base, "config": {"tp": 2}, "space": {"prefill_tp": [1, 2], "weight_dtype": ["fp8"]}}
    )
    assert isinstance(spec, InferenceJobSpec) and spec.config == InferenceConfig(tp=2)
    with pytest.raises(ValidationError, match="unknown inference knob 'tensor_parallel'"):
        parse_job_spec({**base, "space": {"tensor_parallel": [2]}})
    with pytest.raises(ValidationError, match="space.tp: value 0 is invalid"):
        parse_job_spec({**base, "space": {"tp": [0]}})
    with pytest.raises(ValidationError, match="space.kv_dtype"):
        parse_job_spec({**base, "space": {"kv_dtype": ["fp16"]}})


# -- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setup, config, rule",
    [
        ({}, {"tp": 3}, "tp_divides_heads"),
        ({"gpu": "mi300x-192gb"}, {"backend": "trtllm"}, "backend_supports_gpu"),
        ({"gpu": "h100-sxm-80gb"}, {"tp": 4, "weight_dtype": "fp4"}, "weight_dtype_supported"),
        ({}, {"tp": 4, "backend": "trtllm", "weight_dtype": "int8"}, "weight_dtype_supported"),
        ({"gpu": "b200-180gb"}, {"kv_dtype": "int4"}, "kv_dtype_supported"),
        (
            {"gpu": "a100-80gb"},
            {"tp": 4, "backend": "sglang", "kv_dtype": "fp8"},
            "kv_dtype_supported",
        ),
        ({}, {"attention_dp": 2, "tp": 4}, "attention_dp_needs_moe"),
        ({}, {"ep": 2, "tp": 4}, "ep_divides_experts"),
        ({"model": "qwen3-235b-a22b"}, {"tp": 2, "attention_dp": 2, "ep": 8}, "ep_divides_worker"),
        (
            {"model": "qwen3-235b-a22b"},
            {"tp": 4, "attention_dp": 2, "ep": 4},
            "backend_parallel_layout",
        ),
        (
            {"model": "qwen3-235b-a22b"},
            {"backend": "trtllm", "tp": 2, "attention_dp": 4, "ep": 8},
            "backend_parallel_layout",
        ),
        ({}, {"tp": 8, "pp": 2}, "worker_fits_cluster"),
        ({"model": "deepseek-v3", "gpu": "h100-sxm-80gb"}, {"tp": 8}, "weights_fit_memory"),
        ({}, {"tp": 4, "replicas": 3}, "replicas_fit_cluster"),
        ({}, {**DISAGG, "decode": {"tp": 4, "workers": 2}}, "pools_fill_cluster"),
        ({}, {**DISAGG, "prefill": {"tp": 3, "workers": 1}}, "prefill_tp_divides_heads"),
        (
            {"n": 1},
            {"mode": "disaggregated", "prefill": {}, "decode": {}},
            "disaggregated_needs_gpus",
        ),
    ],
)
def test_rules_reject_with_a_named_sentence(setup, config, rule):
    s = space(**{k: v for k, v in setup.items() if k != "n"}, n=setup.get("n", 8))
    violations = s.violations(InferenceConfig.model_validate(config))
    assert any(v.startswith(f"{rule}: ") for v in violations), violations
    assert all(len(v.split(": ", 1)[1]) > 20 for v in violations)


def test_valid_points_pass_every_rule():
    s = space(model="qwen3-235b-a22b")
    ok = [
        {"tp": 8, "weight_dtype": "fp8", "kv_dtype": "fp8"},
        {"backend": "sglang", "tp": 2, "attention_dp": 4, "ep": 8, "weight_dtype": "fp8"},
        {"backend": "trtllm", "tp": 1, "attention_dp": 8, "ep": 8, "weight_dtype": "fp8"},
        {"mode": "disaggregated", "weight_dtype": "fp8", "prefill": {"tp": 4}, "decode": {"tp": 4}},
    ]
    for data in ok:
        assert s.violations(InferenceConfig.model_validate(data)) == [], data


def test_every_rule_is_named_once():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))


# -- enumeration -----------------------------------------------------------------------------


def test_default_knobs_follow_gpu_and_model():
    dense = default_knobs(
        load_model("llama-3.1-70b"), ClusterSpec(gpu="h100-sxm-80gb", num_gpus=8), WORKLOAD
    )
    assert dense["tp"] == [1, 2, 4, 8] and dense["ep"] == [1] and dense["attention_dp"] == [1]
    assert DType.fp4 not in dense["weight_dtype"] and DType.fp8 in dense["weight_dtype"]
    assert dense["max_batch_size"] == [None]  # a concurrency is given: the load sets the batch
    moe = default_knobs(
        load_model("deepseek-v3"), ClusterSpec(gpu="b200-180gb", num_gpus=16), WORKLOAD
    )
    assert (
        moe["ep"][-1] == 16 and DType.fp4 in moe["weight_dtype"] and DType.int4 in moe["kv_dtype"]
    )
    unbounded = InferenceWorkload(input_len=10, output_len=10)
    caps = default_knobs(
        load_model("llama-3.1-8b"), ClusterSpec(gpu="a100-80gb", num_gpus=1), unbounded
    )
    assert (
        caps["mode"] == ["aggregated"]
        and None in caps["max_batch_size"]
        and len(caps["max_batch_size"]) > 1
    )
    assert DType.int8 in caps["weight_dtype"]  # no fp8 on Ampere: int8 W8A8 instead


def test_enumerate_matches_brute_force_on_a_small_space():
    s = space(
        n=4,
        backend=["vllm", "trtllm"],
        weight_dtype=["bf16", "fp8"],
        kv_dtype=["fp8"],
        tp=[1, 2, 4],
        pp=[1, 2],
        prefill_tp=[1, 2],
        decode_tp=[1, 2, 4],
        prefill_workers=[1, 2, 3],
    )
    listed = list(s.enumerate())
    assert len(listed) == s.count_valid() == len({c.key() for c in listed}) > 0
    assert all(s.violations(c) == [] for c in listed)
    brute: set[str] = set()
    flat_knobs = [k for k in s.knobs if k != "decode_workers"]
    for mode in ("aggregated", "disaggregated"):
        values = [[v for v in s.knobs[k]] if _used(k, mode) else [None] for k in flat_knobs]
        for combo in itertools.product(*values):
            flat = dict(zip(flat_knobs, combo, strict=True), mode=mode)
            if mode == "disaggregated":
                pre = (
                    flat["prefill_tp"]
                    * flat["prefill_pp"]
                    * flat["prefill_attention_dp"]
                    * flat["prefill_workers"]
                )
                size = flat["decode_tp"] * flat["decode_pp"] * flat["decode_attention_dp"]
                flat["decode_workers"] = (
                    (4 - pre) // size if (4 - pre) > 0 and (4 - pre) % size == 0 else 1
                )
            try:
                config = InferenceConfig.from_flat(flat)
            except ValidationError:
                continue
            if not s.violations(config):
                brute.add(config.key())
    assert brute == {c.key() for c in listed}


def _used(knob: str, mode: str) -> bool:
    pooled = knob.startswith(("prefill_", "decode_"))
    if knob in ("mode", "backend", "weight_dtype", "kv_dtype"):
        return True
    return pooled == (mode == "disaggregated")


def test_default_space_enumerates_fast():
    s = space()
    start = time.perf_counter()
    configs = list(s.enumerate())
    assert time.perf_counter() - start < 1.0
    assert len(configs) == s.count_valid() > 100
    assert {c.mode for c in configs} == {"aggregated", "disaggregated"}
    assert {c.backend for c in configs} == {"vllm", "sglang", "trtllm"}


def test_large_moe_space_counts_with_a_cap_quickly():
    s = space(model="deepseek-v3", gpu="gb200-nvl72", n=72)
    start = time.perf_counter()
    assert s.count_valid(cap=5001) == 5001
    assert time.perf_counter() - start < 5.0


def test_explain_empty_names_the_rule_and_the_fix():
    s = space(
        model="deepseek-v3",
        gpu="h100-sxm-80gb",
        weight_dtype=["bf16"],
        mode=["aggregated"],
        backend=["sglang"],
        attention_dp=[1],
        ep=[1],
    )
    assert s.count_valid() == 0
    text = s.explain_empty()
    assert "weights_fit_memory" in text and "smaller weight_dtype" in text


# -- Optuna view -----------------------------------------------------------------------------


def test_optuna_round_trip_for_both_modes():
    s = space()
    dists = s.to_optuna()
    assert "decode_workers" not in dists  # solved from the GPU count
    assert all(isinstance(c, str | int | type(None)) for d in dists.values() for c in d.choices)
    for config in (
        InferenceConfig(backend="sglang", tp=4, weight_dtype="fp8", kv_dtype="fp8"),
        InferenceConfig.model_validate({**DISAGG, "weight_dtype": "fp8"}),
    ):
        params = s.encode(config)
        assert set(params) <= set(dists)
        assert s.decode(params) == config
    with pytest.raises(ValueError, match="unknown inference knob"):
        s.decode({"nope": 1})
