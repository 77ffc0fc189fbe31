"""The vectorised training model against the scalar one, on every valid point of real spaces.

``estimate_training_batch`` runs the scalar formulas as numpy expressions in the same order of
operations, so it reproduces ``estimate_training`` to the last bit on this machine; the
tolerance below (1e-12 relative) only leaves room for a libm or SIMD path that rounds one
operation differently (e.g. ``log2`` in the tree all-reduce), far below the 1e-6 the tuner
could notice. Rows the scalar model rejects must be rejected with the scalar's own message,
and configurations that do not fit must say so as the scalar path does.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from cost_models import Calibration
from cost_models import Framework
from cost_models import estimate_training
from cost_models import load_calibration
from cost_models.accuracy.rows import DEEPSPEED_2021
from cost_models.plan import MODERN
from cost_models.vectorised import TrainingBatch
from cost_models.vectorised import estimate_training_batch
from search_spaces.catalog import load_model
from search_spaces.config import TrainingConfig
from search_spaces.objectives import TRAINING_METRICS
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import TrainingWorkload
from search_spaces.training_space import TrainingSpace

RTOL = 1e-12

# Every framework flag flipped: unfused attention, no DP/TP overlap, and whatever else
# ``Framework`` offers (the legacy code paths of the model).
LEGACY = Framework(**{f.name: not getattr(MODERN, f.name) for f in fields(Framework)})

# (id, model, gpu, num_gpus, seq_len, global batch, space overrides, framework)
SPACES = [
    # dense GPT-3 on 128 A100 (16 nodes): tp/pp/vpp/dp, sharding, recompute, unfused-free path
    (
        "gpt3-175b-a100x128",
        "gpt3-175b",
        "a100-80gb",
        128,
        2048,
        512,
        {"micro_batch_size": [1, 4], "sharding": ["none", "zero1", "zero3"]},
        MODERN,
    ),
    # Llama 70B on 64 H100: cp (seq 8192), sequence parallel, fp8, vpp
    (
        "llama70b-h100x64",
        "llama-3.1-70b",
        "h100-sxm-80gb",
        64,
        8192,
        128,
        {"sharding": ["zero1", "zero3"], "micro_batch_size": [1, 2], "recompute": ["none", "full"]},
        MODERN,
    ),
    # MoE with expert parallelism on 32 H100 (4 nodes), fp8
    (
        "qwen3-30b-a3b-h100x32",
        "qwen3-30b-a3b",
        "h100-sxm-80gb",
        32,
        4096,
        256,
        {"micro_batch_size": [1, 4], "sharding": ["none", "zero2", "zero3"], "pp": [1, 2, 4]},
        MODERN,
    ),
    # MLA, shared experts, leading dense layers, 256 H100 (32 nodes)
    (
        "deepseek-v3-h100x256",
        "deepseek-v3",
        "h100-sxm-80gb",
        256,
        4096,
        512,
        {
            "micro_batch_size": [1],
            "sharding": ["zero1", "zero3"],
            "recompute": ["selective", "full"],
        },
        MODERN,
    ),
    # Llama 405B across 1024 H100 (128 nodes): multi-node TP-free groups, deep pipelines
    (
        "llama405b-h100x1024",
        "llama-3.1-405b",
        "h100-sxm-80gb",
        1024,
        8192,
        1024,
        {"tp": [4, 8], "micro_batch_size": [1], "recompute": ["selective"], "cp": [1, 2, 4]},
        MODERN,
    ),
    # the legacy framework paths (unfused attention, no overlap, ZeRO-3 without multi-rail
    # rings) on two A100 nodes
    ("llama8b-a100x16-legacy", "llama-3.1-8b", "a100-40gb", 16, 2048, 64, {}, LEGACY),
    # DeepSpeed's 2021 ZeRO-3 (one NIC per GPU across nodes, re-gather for recompute,
    # per-module prefetch behind the compute) on four A100 nodes
    (
        "llama8b-a100x32-deepspeed2021",
        "llama-3.1-8b",
        "a100-80gb",
        32,
        2048,
        256,
        {"sharding": ["zero3"], "recompute": ["none", "full"]},
        DEEPSPEED_2021,
    ),
    # fp4 on Blackwell, an MoE with sliding-window layers
    (
        "gpt-oss-120b-b200x64",
        "gpt-oss-120b",
        "b200-180gb",
        64,
        8192,
        256,
        {"micro_batch_size": [1], "sharding": ["zero1"], "recompute": ["selective", "full"]},
        MODERN,
    ),
]


def _job(model: str, gpu: str, num_gpus: int, seq_len: int, gbs: int):
    return (
        load_model(model),
        ClusterSpec(gpu=gpu, num_gpus=num_gpus),
        TrainingWorkload(seq_len=seq_len, global_batch_size=gbs),
    )


def _assert_same(scalar, vector, where: str) -> None:
    """Every field of two TrainingEstimates equal (numbers to RTOL, dicts key by key)."""
    a, b = scalar.model_dump(), vector.model_dump()
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            assert value.keys() == b[key].keys(), f"{where}: {key} keys"
            for term, v in value.items():
                assert math.isclose(b[key][term], v, rel_tol=RTOL, abs_tol=1e-300), (
                    f"{where}: {key}[{term}] = {b[key][term]!r}, scalar {v!r}"
                )
        elif isinstance(value, float):
            assert math.isclose(b[key], value, rel_tol=RTOL), (
                f"{where}: {key} = {b[key]!r}, scalar {value!r}"
            )
        else:
            assert b[key] == value, f"{where}: {key} = {b[key]!r}, scalar {value!r}"


@pytest.mark.parametrize(
    ("model", "gpu", "num_gpus", "seq_len", "gbs", "space", "framework"),
    [pytest.param(*case[1:], id=case[0]) for case in SPACES],
)
def test_every_valid_point_matches_the_scalar_model(
    model, gpu, num_gpus, seq_len, gbs, space, framework
):
    spec, cluster, workload = _job(model, gpu, num_gpus, seq_len, gbs)
    configs = list(TrainingSpace(spec, cluster, workload, space).enumerate())
    assert len(configs) > 50, "the space should be big enough to mean something"
    batch = estimate_training_batch(spec, cluster, workload, configs, framework=framework)
    assert len(batch) == len(configs)
    scalar = [estimate_training(spec, cluster, workload, c, framework=framework) for c in configs]
    assert batch.valid.all()
    for i, (config, est) in enumerate(zip(configs, scalar, strict=True)):
        _assert_same(est, batch.estimate(i), f"{model} {config!r}")
    # the objective arrays the tuner reads are the same numbers
    metrics = batch.metrics()
    assert set(metrics) == set(scalar[0].metrics()) == set(TRAINING_METRICS)
    for name, values in metrics.items():
        expected = np.array([e.metrics()[name] for e in scalar])
        np.testing.assert_allclose(values, expected, rtol=RTOL)
    np.testing.assert_array_equal(batch.fits, [e.fits for e in scalar])


def test_configurations_that_do_not_fit_are_flagged_like_the_scalar_model():
    spec, cluster, workload = _job("llama-3.1-70b", "a100-80gb", 64, 4096, 128)
    configs = list(TrainingSpace(spec, cluster, workload).enumerate())
    batch = estimate_training_batch(spec, cluster, workload, configs)
    fits = [estimate_training(spec, cluster, workload, c).fits for c in configs]
    assert not all(fits) and any(fits), "the space should mix fitting and OOM points"
    np.testing.assert_array_equal(batch.fits, fits)
    oom = int(np.flatnonzero(~batch.fits)[0])
    assert batch.memory_per_gpu_gib[oom] > batch.memory_capacity_gib
    assert batch.estimate(oom).binding_memory_term == batch.binding_term(oom)


INVALID = [
    TrainingConfig(tp=3),  # does not divide the heads or the GPUs
    TrainingConfig(tp=8, pp=4, cp=4),  # model parallel 128 > 64 GPUs
    TrainingConfig(ep=2),  # expert parallelism on a dense model
    TrainingConfig(vpp=2),  # vpp without pp
    TrainingConfig(pp=2, vpp=64),  # more virtual stages than layers
    TrainingConfig(micro_batch_size=3),  # does not divide the global batch
    TrainingConfig(dtype=DType.fp4),  # no fp4 tensor cores on H100
    TrainingConfig(dtype=DType.int8),  # not a training precision
]


def test_invalid_rows_are_rejected_with_the_scalar_message():
    spec, cluster, workload = _job("llama-3.1-70b", "h100-sxm-80gb", 64, 8192, 128)
    good = TrainingConfig(tp=8, pp=2)
    configs = [good, *INVALID, good]
    batch = estimate_training_batch(spec, cluster, workload, configs)
    np.testing.assert_array_equal(batch.valid, [True] + [False] * len(INVALID) + [True])
    for i, config in enumerate(configs[1:-1], start=1):
        with pytest.raises(ValueError) as scalar:
            estimate_training(spec, cluster, workload, config)
        assert batch.error(i) == str(scalar.value)
        with pytest.raises(ValueError, match="."):
            batch.estimate(i)
        assert math.isnan(batch.step_time_s[i]) and not batch.fits[i]
        assert batch.dp[i] == 0 and batch.binding_term(i) == ""
    _assert_same(estimate_training(spec, cluster, workload, good), batch.estimate(0), "good")
    _assert_same(estimate_training(spec, cluster, workload, good), batch.estimate(9), "good")
    assert batch.error(0) is None


def test_a_batch_of_one_an_empty_batch_and_an_all_invalid_batch():
    spec, cluster, workload = _job("qwen3-30b-a3b", "h100-sxm-80gb", 16, 4096, 64)
    one = TrainingConfig(tp=2, ep=8, dtype=DType.fp8, sharding="zero3", recompute="full")
    batch = estimate_training_batch(spec, cluster, workload, [one])
    _assert_same(estimate_training(spec, cluster, workload, one), batch.estimate(0), "one")

    empty = estimate_training_batch(spec, cluster, workload, [])
    assert len(empty) == 0
    assert all(len(v) == 0 for v in empty.metrics().values())
    assert all(len(v) == 0 for v in empty.breakdown.values())

    bad = estimate_training_batch(spec, cluster, workload, [TrainingConfig(ep=3)] * 3)
    assert not bad.valid.any() and np.isnan(bad.tokens_per_s_per_gpu).all()
    assert "ep=3" in (bad.error(2) or "")


def test_a_custom_calibration_is_used_as_the_scalar_model_uses_it():
    spec, cluster, workload = _job("mixtral-8x7b", "a100-80gb", 32, 4096, 128)
    base = load_calibration("ampere").model_dump()
    cal = Calibration.model_validate(
        {**base, "gemm_efficiency_bf16": 0.5, "tp_comm_exposed_fraction": 0.4}
    )
    configs = list(
        TrainingSpace(
            spec, cluster, workload, {"micro_batch_size": [1], "sharding": ["zero1"]}
        ).enumerate()
    )
    batch = estimate_training_batch(spec, cluster, workload, configs, cal)
    for i, config in enumerate(configs):
        _assert_same(estimate_training(spec, cluster, workload, config, cal), batch.estimate(i), "")
    default = estimate_training_batch(spec, cluster, workload, configs)
    assert not np.allclose(default.step_time_s, batch.step_time_s)


def test_columns_round_trip_and_defaults_follow_training_config():
    configs = [
        TrainingConfig(tp=4, pp=2, vpp=2, sharding="zero3", recompute="none", dtype=DType.fp8),
        TrainingConfig(cp=2, ep=4, micro_batch_size=8, sequence_parallel=False, tp=2),
        TrainingConfig(),
    ]
    batch = TrainingBatch.from_configs(configs)
    assert [batch.config(i) for i in range(len(batch))] == configs
    built = TrainingBatch.of(tp=[1, 2], sharding=["zero3", "none"], dtype="fp8")
    assert built.config(0) == TrainingConfig(sharding="zero3", dtype=DType.fp8)
    assert built.config(1) == TrainingConfig(tp=2, sharding="none", dtype=DType.fp8)
    assert built.config(1).sequence_parallel  # on when tp > 1, as TrainingConfig does


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"tp": [1, 2], "pp": [1, 2, 4]}, "tp has 2 values, others 3"),
        ({"tq": [1]}, "unknown training knob.*tq"),
        ({"sharding": ["zero4"]}, "sharding='zero4' is not a known value; use one of: none"),
        ({"tp": [0, 1]}, "tp must be >= 1"),
        ({"recompute": [7]}, "recompute code 7 is out of range"),
        ({"pp": [1.5]}, "pp must hold integers"),
    ],
)
def test_bad_columns_name_the_knob_and_the_fix(columns, message):
    with pytest.raises(ValueError, match=message):
        TrainingBatch.of(**columns)
