"""Serving profiles on this machine's CPU with real PyTorch: tiny GQA and MoE shards prefill
into a preallocated KV cache and decode against it, memory is measured, capped layers and
contexts are scaled back and say so, disaggregated configs profile both pool shapes, and the
planner and the scaling fits are checked on figures with a known answer. The CUDA path is
written against the same interfaces; without a GPU its test says so and is skipped."""

from __future__ import annotations

import math

import pytest
import torch

from cost_models.inference_params import backend_profile
from cost_models.inference_terms import WorkerShape
from cost_models.profiling.runner import ProfilingError
from cost_models.profiling.serving_evaluate import pool_decode_s
from cost_models.profiling.serving_evaluate import pool_prefill_s
from cost_models.profiling.serving_evaluate import profile_serving
from cost_models.profiling.serving_runner import PoolProfile
from cost_models.profiling.serving_runner import PoolRequest
from cost_models.profiling.serving_runner import ServingProfileRequest
from cost_models.profiling.serving_runner import profile_serving_in_child
from cost_models.profiling.serving_runner import profile_serving_in_process
from cost_models.profiling.serving_shard import plan_serving
from cost_models.profiling.serving_shard import serving_bytes
from search_spaces.evaluators import ProfileEvaluatorSpec
from search_spaces.inference_config import InferenceConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

GQA = ModelSpec(
    name="tiny-gqa",
    num_layers=2,
    hidden_size=256,
    num_attention_heads=4,
    num_kv_heads=2,
    ffn_activation="swiglu",
    vocab_size=2048,
)
MOE = ModelSpec(
    name="tiny-moe",
    num_layers=2,
    hidden_size=128,
    num_attention_heads=4,
    num_kv_heads=2,
    vocab_size=512,
    num_experts=4,
    experts_per_token=2,
    moe_ffn_hidden_size=128,
    num_shared_experts=1,
)
MLA = ModelSpec(
    name="tiny-mla",
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
)
CPU = ClusterSpec(gpu="local-cpu", num_gpus=2)
WORKLOAD = InferenceWorkload(input_len=96, output_len=24, concurrency=4)
FAST = ProfileEvaluatorSpec(warmup_steps=1, timed_steps=2, isolate=False, device="cpu")


def request(model: ModelSpec, *pools: PoolRequest, **update: object) -> ServingProfileRequest:
    base = ServingProfileRequest(
        model=model,
        pools=list(pools),
        input_len=WORKLOAD.input_len,
        output_len=WORKLOAD.output_len,
        kv_dtype="bf16",
        chunk_tokens=64,
        warmup_steps=1,
        timed_steps=2,
        max_layers=4,
        device="cpu",
    )
    return base.model_copy(update=update)


def test_gqa_shard_prefills_a_kv_cache_and_decodes_against_it() -> None:
    response = profile_serving_in_process(request(GQA, PoolRequest(role="both", batch_per_rank=4)))
    pool = response.pools[0]
    main = pool.main
    assert [p["input_len"] for p in main["prefill"]] == [96]  # chunked 64 + 32
    assert all(p["seconds"] > 0 and len(p["samples_s"]) == 2 for p in main["prefill"])
    assert len(main["decode"]) == 3 and all(p["step_s"] > 0 for p in main["decode"])
    contexts = [p["context"] for p in main["decode"]]
    assert contexts == sorted(contexts) and contexts[0] > 96  # read the prefilled prompt
    # 2 layers x K and V x batch 4 x (96 + 24) slots x 2 local KV heads x 64 x bf16/fp32
    element = 2 if response.dtype == "bfloat16" else 4
    assert main["kv_cache_bytes"] == 2 * 2 * 4 * 120 * 2 * 64 * element
    assert main["peak_bytes"] > main["weights_bytes"] + main["kv_cache_bytes"] > 0
    assert main["memory_method"].startswith("peak RSS")
    assert response.device_kind == "cpu" and not pool.plan.notes


def test_moe_shard_with_expert_parallel_attention_ranks() -> None:
    pool = PoolRequest(role="both", ep=2, attention_dp=2, batch_per_rank=2)
    response = profile_serving_in_process(request(MOE, pool))
    shard = response.pools[0].plan.shard.shard
    # 4 experts over ep=2 ranks; the two attention ranks' tokens meet at each expert
    assert (shard.local_experts, shard.ep, shard.moe_layers) == (2, 2, 2)
    assert response.pools[0].main["decode"][0]["step_s"] > 0
    assert response.pools[0].main["prefill"][0]["seconds"] > 0


def test_mla_caches_the_latent_on_a_pipeline_stage() -> None:
    pool = PoolRequest(role="both", pp=2, batch_per_rank=4)
    response = profile_serving_in_process(request(MLA, pool))
    plan, main = response.pools[0].plan, response.pools[0].main
    assert (plan.stage_layers, plan.target_batch, plan.shard.shard.with_embedding) == (1, 2, False)
    # 1 layer x batch 2 x (96 + 24) slots x (latent 32 + rope key 16)
    element = 2 if response.dtype == "bfloat16" else 4
    assert main["kv_cache_bytes"] == 2 * 120 * 48 * element
    assert main["decode"][0]["step_s"] > 0 and main["prefill"][0]["seconds"] > 0


def test_decode_step_grows_with_the_batch() -> None:
    def step_s(batch: int) -> float:
        pools = [PoolRequest(role="both", batch_per_rank=batch)]
        response = profile_serving_in_process(request(GQA, *pools, timed_steps=4))
        return min(p["step_s"] for p in response.pools[0].main["decode"])

    assert step_s(128) > 1.5 * step_s(1)


def test_metrics_sit_beside_the_prediction() -> None:
    result = profile_serving(GQA, CPU, WORKLOAD, InferenceConfig(), FAST)
    assert set(result.metrics) == set(result.predicted)
    m, profile = result.metrics, result.details["profile"]
    assert m["ttft_ms"] > 1e3 * profile["prefill_s"] > 0
    assert m["tpot_ms"] >= 1e3 * profile["decode_step_s"] > 0
    assert m["tokens_per_s_per_user"] == pytest.approx(1e3 / m["tpot_ms"])
    assert m["output_tokens_per_s_per_gpu"] == pytest.approx(m["output_tokens_per_s"] / 2)
    assert profile["memory_gib"]["reserve"] > 0  # the framework's reserve is modeled
    assert m["memory_per_gpu_gib"] == pytest.approx(sum(profile["memory_gib"].values()))
    assert profile["peak_memory_gib"] > 0
    assert result.details["load"] == "closed loop at 4 clients"
    assert result.details["scaled"] is False


def test_open_loop_completes_the_offered_rate_when_it_fits() -> None:
    workload = WORKLOAD.model_copy(update={"concurrency": None, "request_rate": 5.0})
    result = profile_serving(GQA, CPU, workload, InferenceConfig(), FAST)
    assert result.metrics["output_tokens_per_s"] == pytest.approx(5.0 * 24)
    assert not result.measured_estimate.saturated
    assert result.details["load"].startswith("request_rate 5/s")


def test_capped_layers_and_context_are_scaled_back_and_say_so() -> None:
    deep = GQA.model_copy(update={"num_layers": 4})
    settings = FAST.model_copy(update={"max_layers": 2, "max_context_len": 64})
    result = profile_serving(deep, CPU, WORKLOAD, InferenceConfig(), settings)
    notes = result.details["notes"]
    assert result.details["scaled"]
    assert any("2 of the stage's 4 layers" in n for n in notes)
    assert any("context capped at" in n and "96 + 24" in n for n in notes)
    pool = result.details["profile"]["pools"]["both"]
    assert pool["built"]["layers"] == 2 and pool["built"]["input_len"] < 96
    assert [p["input_len"] for p in pool["prefill_samples"]] == [25, 51]  # two lengths fitted
    assert result.details["profile"]["prefill_s"] > max(
        p["seconds"] for p in pool["prefill_samples"]
    )


def test_disaggregated_config_profiles_each_pool_shape() -> None:
    config = InferenceConfig(mode="disaggregated", prefill={"tp": 2}, decode={"tp": 1})
    cluster = CPU.model_copy(update={"num_gpus": 3})
    result = profile_serving(GQA, cluster, WORKLOAD, config, FAST)
    pools = result.details["profile"]["pools"]
    assert set(pools) == {"prefill", "decode"}
    assert pools["prefill"]["shard"]["heads"] == 2 and pools["decode"]["shard"]["heads"] == 4
    assert "decode_step_s" not in pools["prefill"] and "prefill_s" not in pools["decode"]
    assert result.details["modeled"]["kv_transfer_ms"] > 0
    assert result.metrics["ttft_ms"] > 0 and result.metrics["tpot_ms"] > 0


def test_formats_the_device_cannot_run_are_reported() -> None:
    config = InferenceConfig(weight_dtype="int4", kv_dtype="fp8")
    result = profile_serving(GQA, CPU, WORKLOAD, config, FAST)
    precision = result.details["precision"]
    assert precision["weights_requested"] == "int4" and precision["kv_requested"] == "fp8"
    assert precision["weights_ran"] in ("bfloat16", "float32")
    assert precision["kv_ran"] == precision["weights_ran"]  # no fp8 cache on a CPU
    assert len(precision["notes"]) == 2 and "int4" in precision["notes"][0]
    bf16 = profile_serving(GQA, CPU, WORKLOAD, InferenceConfig(), FAST)
    weights = result.details["profile"]["memory_gib"]["weights"]
    assert weights < bf16.details["profile"]["memory_gib"]["weights"]  # converted to 4-bit


def test_invalid_configuration_is_rejected_before_profiling() -> None:
    with pytest.raises(ValueError, match="tp"):
        profile_serving(GQA, CPU, WORKLOAD, InferenceConfig(tp=3), FAST)


def test_planner_shrinks_layers_then_batch_then_context() -> None:
    deep = GQA.model_copy(update={"num_layers": 8})
    args = {
        "role": "both",
        "batch_per_rank": 64,
        "input_len": 4096,
        "output_len": 1024,
        "decode_steps": 3,
        "max_layers": 8,
        "max_context_len": None,
        "chunk_tokens": 8192,
        "weight_bytes": 2.0,
        "kv_bytes": 2.0,
    }
    roomy = plan_serving(deep, WorkerShape(), budget_bytes=1e12, **args)  # type: ignore[arg-type]
    assert roomy.notes == [] and roomy.shard.layers == 8 and roomy.shard.batch == 64
    fewer = plan_serving(deep, WorkerShape(), budget_bytes=1e9, **args)  # type: ignore[arg-type]
    assert (fewer.shard.layers, fewer.shard.batch, fewer.shard.input_len) == (2, 64, 4096)
    assert fewer.scaled_layers and len(fewer.notes) == 1
    tight = plan_serving(deep, WorkerShape(), budget_bytes=3e8, **args)  # type: ignore[arg-type]
    assert (tight.shard.layers, tight.shard.batch) == (1, 1)
    assert tight.scaled_batch and tight.scaled_context and tight.shard.input_len < 4096
    assert len(tight.notes) == 3 and "decoded at batch 1" in tight.notes[1]
    with pytest.raises(ProfilingError) as err:
        plan_serving(deep, WorkerShape(), budget_bytes=1e5, **args)  # type: ignore[arg-type]
    assert err.value.kind == "oom" and "analytical" in str(err.value)
    pp = plan_serving(deep, WorkerShape(pp=2), budget_bytes=1e12, **args)  # type: ignore[arg-type]
    assert pp.stage_layers == 4 and pp.target_batch == 32 and not pp.shard.shard.with_embedding


def _pool(
    prefill: dict[int, float], decode: list[tuple[int, float, float]], **plan: object
) -> PoolProfile:
    """A pool profile with synthetic measurements (for the scaling arithmetic)."""
    built = plan_serving(
        GQA.model_copy(update={"num_layers": int(plan.get("layers", 2))}),
        WorkerShape(pp=int(plan.get("pp", 1))),
        role="both",
        batch_per_rank=float(plan.get("batch", 8)),
        input_len=int(plan.get("input_len", 96)),
        output_len=24,
        decode_steps=3,
        max_layers=int(plan.get("max_layers", 4)),
        max_context_len=plan.get("cap"),  # type: ignore[arg-type]
        chunk_tokens=8192,
        budget_bytes=float(plan.get("budget", 1e12)),
        weight_bytes=2.0,
        kv_bytes=2.0,
    )
    run = {
        "prefill": [{"input_len": k, "seconds": v} for k, v in prefill.items()],
        "decode": [{"batch": b, "context": c, "step_s": s} for b, c, s in decode],
    }
    return PoolProfile(role="both", plan=built, main=run)


def test_scaling_fits_recover_known_costs() -> None:
    # prefill cost 1e-4 s/token + 1e-7 s/token^2, measured at two capped lengths
    pool = _pool({25: 1e-4 * 25 + 1e-7 * 625, 51: 1e-4 * 51 + 1e-7 * 2601}, [], cap=64)
    assert pool.plan.scaled_context
    assert pool_prefill_s(pool) == pytest.approx(1e-4 * 96 + 1e-7 * 96**2)
    # decode step 1 ms + 1 us per cached token, read at the generation's mean context
    points = [(8, c, 1e-3 + 1e-6 * c) for c in (100.0, 110.0, 118.0)]
    assert pool_decode_s(_pool({96: 1.0}, points), 108.0) == pytest.approx(1e-3 + 1e-6 * 108)
    # two pipeline stages: the step and the prompt pass both stages
    staged = _pool({96: 0.01}, [(4, 100.0, 2e-3)], pp=2)
    assert (pool_prefill_s(staged), pool_decode_s(staged, 108.0)) == (0.02, 4e-3)


def test_capped_batch_is_extrapolated_affinely() -> None:
    # 1 ms per step + 0.1 ms per request; memory allows batch 4 (and 2), the target is 64
    one_layer = {"layers": 1, "max_layers": 1, "batch": 4}
    fits_4 = serving_bytes(_pool({96: 1.0}, [], **one_layer).plan.shard, 2.0, 2.0)
    plan = {**one_layer, "batch": 64, "budget": fits_4}
    pool = _pool({96: 0.01}, [(4, 100.0, 1.4e-3), (2, 100.0, 1.2e-3)], **plan)
    assert pool.plan.shard.batch == 4 and pool.plan.target_batch == 64
    assert pool_decode_s(pool, 108.0) == pytest.approx(1e-3 + 64 * 1e-4)


@pytest.mark.slow
def test_isolated_serving_profile_runs_in_a_child_and_a_hung_one_is_killed() -> None:
    req = request(GQA, PoolRequest(role="both", batch_per_rank=2))
    ok = profile_serving_in_child(req, timeout_s=120)
    assert ok.pools[0].main["peak_bytes"] > 0 and ok.niceness == 0
    with pytest.raises(ProfilingError) as err:
        profile_serving_in_child(req, timeout_s=0.5)
    assert err.value.kind == "timeout" and "0.5 s" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_fails_with_the_reason() -> None:
    req = request(GQA, PoolRequest(role="both"), device="cuda")
    with pytest.raises(ProfilingError) as err:
        profile_serving_in_process(req)
    assert err.value.kind == "device" and "no GPU" in str(err.value)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no GPU on this machine: the CUDA path (CUDA events, max_memory_allocated, an fp8 "
    "KV cache on compute capability 8.9+) is type-checked; the CPU path is exercised instead",
)
def test_cuda_serving_profile() -> None:
    response = profile_serving_in_process(
        request(GQA, PoolRequest(role="both", batch_per_rank=4), device="cuda", kv_dtype="fp8")
    )
    assert response.device_kind == "cuda"
    assert response.pools[0].main["memory_method"] == "cuda max_memory_allocated"
    fp8 = torch.cuda.get_device_capability() >= (8, 9)
    assert response.kv_dtype == ("float8_e4m3fn" if fp8 else response.dtype)
    assert math.isfinite(response.pools[0].main["decode"][0]["step_s"])


@pytest.mark.parametrize("model", [GQA, MLA], ids=["gqa", "mla"])
def test_cache_reproduces_full_attention(model: ModelSpec) -> None:
    """A chunked prefill and a decode step against the cache give the logits of running the
    whole sequence at once: the cache holds the real keys and values."""
    from cost_models.profiling.serving_model import ServingModel
    from cost_models.profiling.serving_model import allocate_cache
    from cost_models.profiling.serving_shard import ServingShard
    from cost_models.profiling.serving_shard import serving_shard_spec

    spec = serving_shard_spec(model, WorkerShape(), 2, 1, 97, 96)
    torch.manual_seed(0)

    def shard(chunk: int) -> ServingShard:
        return ServingShard(shard=spec, input_len=96, cache_len=97, chunk_tokens=chunk, role="both")

    net = ServingModel(shard(96)).eval()
    tokens = torch.randint(0, spec.vocab_size, (1, 97))
    with torch.inference_mode():
        whole = net(
            tokens, allocate_cache(shard(97), torch.device("cpu"), torch.float32), slice(0, 1), 0
        )
        cache = allocate_cache(shard(32), torch.device("cpu"), torch.float32)
        for start in range(0, 96, 32):  # three chunks, the later ones causal over the cache
            net(tokens[:, start : start + 32], cache, slice(0, 1), start, logits=False)
        step = net(tokens[:, 96:], cache, slice(0, 1), 96)
    assert whole is not None and step is not None
    torch.testing.assert_close(step, whole, rtol=1e-4, atol=1e-4)


def test_sliding_window_layers_attend_within_the_window() -> None:
    """With a window of 16, a chunked prefill and a decode step against the cache give the
    logits of the whole sequence under the same windowed mask, and the KV memory holds only
    the window in the sliding layers."""
    from cost_models.profiling.serving_model import ServingModel
    from cost_models.profiling.serving_model import _mask
    from cost_models.profiling.serving_model import allocate_cache
    from cost_models.profiling.serving_shard import ServingShard
    from cost_models.profiling.serving_shard import serving_shard_spec

    windowed = GQA.model_copy(update={"sliding_window": 16, "sliding_window_layers": 1})
    spec = serving_shard_spec(windowed, WorkerShape(), 2, 1, 49, 48)
    s = ServingShard(
        shard=spec,
        input_len=48,
        cache_len=49,
        chunk_tokens=16,
        role="both",
        sliding_window=16,
        sliding_layers=1,
    )
    torch.manual_seed(0)
    net = ServingModel(s).eval()
    assert net.blocks[0].attn.window == 16 and net.blocks[1].attn.window == 0
    tokens = torch.randint(0, spec.vocab_size, (1, 49))
    cpu = torch.device("cpu")
    with torch.inference_mode():
        whole = net(tokens, allocate_cache(s, cpu, torch.float32), slice(0, 1), 0)
        cache = allocate_cache(s, cpu, torch.float32)
        for start in range(0, 48, 16):
            net(tokens[:, start : start + 16], cache, slice(0, 1), start, logits=False)
        step = net(tokens[:, 48:], cache, slice(0, 1), 48)
    assert whole is not None and step is not None
    torch.testing.assert_close(step, whole, rtol=1e-4, atol=1e-4)
    net.blocks[0].attn.window = 0  # the same weights without the window see other keys
    with torch.inference_mode():
        unwindowed = net(tokens, allocate_cache(s, cpu, torch.float32), slice(0, 1), 0)
    assert unwindowed is not None and not torch.allclose(unwindowed, whole, atol=1e-3)
    mask = _mask(2, 20, 5, 16, cpu)  # queries at 20, 21 over keys 5..21
    assert mask[0].tolist() == [True] * 16 + [False]
    assert mask[1].tolist() == [False] + [True] * 16
    result = profile_serving(windowed, CPU, WORKLOAD, InferenceConfig(), FAST)
    full = profile_serving(GQA, CPU, WORKLOAD, InferenceConfig(), FAST)
    tokens = 96 + (24 if backend_profile("vllm").kv_reservation == "full" else 12)
    kv = result.details["profile"]["memory_gib"]["kv_cache"]
    full_kv = full.details["profile"]["memory_gib"]["kv_cache"]
    assert kv == pytest.approx(full_kv * (tokens + 16) / (2 * tokens))  # 1 of 2 layers windowed
