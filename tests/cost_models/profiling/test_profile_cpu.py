"""The profile evaluator's core on this machine's CPU, with real PyTorch: shards of dense,
GQA, MoE and MLA models train, memory is measured, scaled profiles say so, and a profile in
a child process fails with its cause. The CUDA path is written against the same interfaces;
without a GPU its test says so and is skipped."""

from __future__ import annotations

import pytest
import torch

from cost_models.profiling.evaluate import profile_training
from cost_models.profiling.runner import ProfileRequest
from cost_models.profiling.runner import ProfilingError
from cost_models.profiling.runner import profile_in_child
from cost_models.profiling.runner import profile_in_process
from cost_models.profiling.shard import full_shard
from cost_models.profiling.shard import shard_params
from search_spaces.config import TrainingConfig
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.specs import ClusterSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

TINY = ModelSpec(name="tiny", num_layers=2, hidden_size=128, num_attention_heads=4, vocab_size=512)
WORKLOAD = TrainingWorkload(seq_len=64, global_batch_size=8)
CPU = ClusterSpec(gpu="local-cpu", num_gpus=2)
FAST = {"warmup_steps": 1, "timed_steps": 2, "isolate": False, "device": "cpu"}


def request(model: ModelSpec = TINY, **config: object) -> ProfileRequest:
    return ProfileRequest(
        model=model,
        workload=WORKLOAD,
        config=TrainingConfig.model_validate(config),
        warmup_steps=1,
        timed_steps=2,
        max_layers=4,
        device="cpu",
    )


def test_a_shard_trains_and_is_measured() -> None:
    response = profile_in_process(request())
    main = response.profile["main"]
    assert isinstance(main, dict)
    assert main["microbatch_s"] > 0 and main["optimizer_s"] > 0
    assert len(main["microbatch_samples_s"]) == 2
    # fp32 master weights (AMP), one fp32 gradient each, two Adam moments
    params = shard_params(full_shard(TINY, WORKLOAD, TrainingConfig(), 2))
    assert main["weights_bytes"] == pytest.approx(4 * params, rel=0.05)
    assert main["optimizer_bytes"] == pytest.approx(2 * main["weights_bytes"], rel=0.01)
    assert main["peak_bytes"] > main["weights_bytes"]
    assert main["memory_method"].startswith("peak RSS")
    assert response.profile["device_kind"] == "cpu"


@pytest.mark.parametrize(
    ("model", "config"),
    [
        (TINY.model_copy(update={"num_kv_heads": 2, "ffn_activation": "swiglu"}), {"tp": 2}),
        (
            ModelSpec(
                name="moe",
                num_layers=2,
                hidden_size=128,
                num_attention_heads=4,
                vocab_size=512,
                num_experts=4,
                experts_per_token=2,
                num_shared_experts=1,
            ),
            {"ep": 2, "recompute": "full"},
        ),
        (
            ModelSpec(
                name="mla",
                num_layers=2,
                hidden_size=128,
                num_attention_heads=4,
                vocab_size=512,
                attention="mla",
                q_lora_rank=64,
                kv_lora_rank=32,
                qk_nope_head_dim=32,
                qk_rope_head_dim=16,
                v_head_dim=32,
            ),
            {"cp": 2, "pp": 2},
        ),
    ],
    ids=["gqa-swiglu-tp2", "moe-ep2-full-recompute", "mla-cp2-pp2"],
)
def test_architectures_and_parallel_layouts(model: ModelSpec, config: dict[str, int]) -> None:
    response = profile_in_process(request(model, **config))
    assert response.profile["main"]["microbatch_s"] > 0  # type: ignore[index]


def test_layers_beyond_max_layers_are_scaled_from_a_zero_layer_run() -> None:
    deep = TINY.model_copy(update={"num_layers": 6})
    settings = ProfileEvaluatorSpec(max_layers=2, **FAST)  # type: ignore[arg-type]
    result = profile_training(deep, CPU, WORKLOAD, TrainingConfig(), settings)
    assert result.details["scaled"] and result.details["shard"]["num_layers"] == 2
    assert "2 of the stage's 6 layers" in result.details["notes"][0]
    shallow = profile_training(TINY, CPU, WORKLOAD, TrainingConfig(), settings)
    assert result.metrics["step_time_s"] > shallow.metrics["step_time_s"]


def test_measured_metrics_sit_beside_the_prediction() -> None:
    settings = ProfileEvaluatorSpec(**FAST)  # type: ignore[arg-type]
    result = profile_training(TINY, CPU, WORKLOAD, TrainingConfig(tp=2), settings)
    assert set(result.metrics) == set(result.predicted)
    assert result.metrics["step_time_s"] > 0 and result.metrics["memory_per_gpu_gib"] > 0
    assert result.metrics["tokens_per_s"] == pytest.approx(
        WORKLOAD.global_batch_size * WORKLOAD.seq_len / result.metrics["step_time_s"]
    )
    assert result.details["modeled_s"]["tensor_parallel"] > 0  # tp=2: modeled, not measured


def test_invalid_configuration_is_rejected_before_profiling() -> None:
    settings = ProfileEvaluatorSpec(**FAST)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tp"):
        profile_training(TINY, CPU, WORKLOAD, TrainingConfig(tp=3), settings)


@pytest.mark.slow
def test_isolated_profile_runs_in_a_child_and_a_hung_one_is_killed() -> None:
    ok = profile_in_child(request(), timeout_s=120)
    assert ok.profile["main"]["peak_bytes"] > 0  # type: ignore[index]
    with pytest.raises(ProfilingError) as err:
        profile_in_child(request(), timeout_s=0.5)
    assert err.value.kind == "timeout" and "0.5 s" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_fails_with_the_reason() -> None:
    with pytest.raises(ProfilingError) as err:
        profile_in_process(request().model_copy(update={"device": "cuda"}))
    assert err.value.kind == "device" and "no GPU" in str(err.value)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no GPU on this machine: the CUDA path (CUDA events, max_memory_allocated, bf16 "
    "autocast, NCCL collectives) is type-checked; the CPU path is exercised instead",
)
def test_cuda_profile() -> None:
    response = profile_in_process(request().model_copy(update={"device": "cuda"}))
    assert response.profile["device_kind"] == "cuda"
    assert response.profile["main"]["memory_method"] == "cuda max_memory_allocated"  # type: ignore[index]
