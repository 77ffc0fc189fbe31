"""The serving model's terms against hand computations, and its serving behaviour.

Expected figures are recomputed here from the architecture's fields and the datasheet, not
read back from the model, so a wrong factor of 2 anywhere shows up.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from cost_models.inference import estimate_inference
from cost_models.inference import plan_deployment
from cost_models.inference_params import backend_profile
from cost_models.inference_params import kv_format
from cost_models.inference_params import quality_loss_pct
from cost_models.inference_params import weight_format
from cost_models.inference_terms import Worker
from cost_models.inference_terms import WorkerShape
from search_spaces.catalog import load_gpu
from search_spaces.catalog import load_model
from search_spaces.inference_config import InferenceConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import InferenceWorkload

LLAMA = load_model("llama-3.1-70b")
H200 = ClusterSpec(gpu="h200-141gb", num_gpus=8)


def worker(model=LLAMA, cluster=H200, tp=1, weights="bf16", kv="bf16", backend="vllm", **shape):
    return Worker(
        model,
        cluster,
        WorkerShape(tp=tp, **shape),
        weight_format(DType(weights)),
        kv_format(DType(kv)),
        backend_profile(backend),
    )


def load(concurrency=None, input_len=2000, output_len=500, **slo) -> InferenceWorkload:
    return InferenceWorkload(
        input_len=input_len, output_len=output_len, concurrency=concurrency, **slo
    )


def layer_params(model) -> float:
    """Every weight except the embeddings and the final norm."""
    return model.total_params() - model.embedding_params() - model.hidden_size


def test_decode_step_at_batch_one_reads_the_weights_once():
    w = worker(tp=1, weights="fp8")
    terms = w.decode_terms(1, 1)
    head = LLAMA.vocab_size * LLAMA.hidden_size * 2.0  # the LM head stays in bf16
    expected = (layer_params(LLAMA) * 1.0 + head) / (4800e9)
    assert terms["weights"] == pytest.approx(expected, rel=1e-3)
    # at batch 1 the GEMM math (2 FLOPs per weight at the fp8 peak) is far below the read
    assert terms["gemm"] < terms["weights"] / 100


def test_tensor_parallel_splits_the_read_and_adds_all_reduces():
    one, eight = worker(tp=1).decode_terms(1, 1), worker(tp=8).decode_terms(1, 1)
    assert eight["weights"] == pytest.approx(one["weights"] / 8, rel=1e-6)
    assert one["collectives"] == 0 and one["link"] == 0
    # 2 all-reduces per layer (after attention and after the MLP), 1 + log2(8) latency steps
    assert eight["collectives"] == pytest.approx(2 * LLAMA.num_layers * (1 + math.log2(8)))


def test_kv_bytes_per_token_mha_and_mla():
    layers, kv_heads, d = LLAMA.num_layers, LLAMA.num_kv_heads, LLAMA.head_dim
    assert worker(tp=1).kv_bytes_per_token() == layers * 2 * kv_heads * d * 2
    assert worker(tp=1, kv="fp8").kv_bytes_per_token() == layers * 2 * kv_heads * d * 1
    assert worker(tp=4).kv_bytes_per_token() == layers * 2 * (kv_heads / 4) * d * 2
    # tp above the KV-head count replicates a head per GPU
    assert worker(tp=16).kv_bytes_per_token() == layers * 2 * 1 * d * 2
    ds = load_model("deepseek-v3")
    mla = worker(model=ds, tp=8, kv="fp8")
    assert mla.kv_bytes_per_token() == ds.num_layers * (512 + 64) * 1  # latent + rope, whole


def test_fp8_halves_the_weight_bytes_and_int4_speeds_decode_not_prefill_math():
    bf16, fp8, int4 = worker(tp=2), worker(tp=2, weights="fp8"), worker(tp=2, weights="int4")
    head = LLAMA.vocab_size * LLAMA.hidden_size * 2.0 / 2
    assert fp8.decode_terms(1, 1)["weights"] - head / 4800e9 == pytest.approx(
        (bf16.decode_terms(1, 1)["weights"] - head / 4800e9) / 2, rel=1e-6
    )
    assert int4.decode_terms(1, 1)["weights"] < 0.3 * bf16.decode_terms(1, 1)["weights"]
    # prefill math: int4 is weight-only (bf16 GEMMs), fp8 runs at twice the bf16 peak
    assert int4.prefill_terms(2000)["gemm"] == pytest.approx(bf16.prefill_terms(2000)["gemm"])
    assert fp8.prefill_terms(2000)["gemm"] == pytest.approx(
        bf16.prefill_terms(2000)["gemm"] / 2,
        rel=1e-3,  # the last token's LM head aside
    )


def test_prefill_is_compute_bound_and_attention_quadratic():
    w = worker(tp=8, weights="fp8")
    short, long = w.prefill_terms(4096), w.prefill_terms(8192)
    assert short["gemm"] > 5 * short["weights"]
    assert long["attention"] == pytest.approx(4 * short["attention"])
    assert long["overhead"] == 1 and w.prefill_terms(8193)["overhead"] == 2  # chunks of 8192


def test_moe_decode_reads_only_the_experts_it_touches():
    qwen = load_model("qwen3-235b-a22b")
    w = worker(model=qwen, tp=8, weights="fp8")
    one, many = w.decode_terms(1, 1), w.decode_terms(512, 1)
    routed = qwen.num_moe_layers * qwen.num_experts * qwen.expert_params() / 8
    touched = qwen.experts_per_token / qwen.num_experts
    assert many["weights"] - one["weights"] == pytest.approx(
        routed * (1 - touched) / 4800e9, rel=0.01
    )


def test_capacity_bounds_the_batch_and_excess_load_queues():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=1)
    config = InferenceConfig(backend="trtllm", weight_dtype="fp8", kv_dtype="fp8")
    dep = plan_deployment(LLAMA, cluster, config)
    w = dep.decode
    p = backend_profile("trtllm")
    pool = (
        141 * 2**30 - w.weight_bytes_per_gpu() - w.activation_bytes() - p.reserve_gib * 2**30
    ) * 0.9
    slots = int(pool / (w.kv_bytes_per_token() * (1024 + 8192)))  # trtllm reserves input+output
    assert dep.decode.request_slots(1024, 8192) == slots and 20 < slots < 80
    at_cap = estimate_inference(LLAMA, cluster, load(slots, 1024, 8192), config)
    over = estimate_inference(LLAMA, cluster, load(4 * slots, 1024, 8192), config)
    assert over.batch_size == at_cap.batch_size == slots and at_cap.max_batch_size == slots
    assert over.fits and over.saturated and not at_cap.saturated
    assert over.output_tokens_per_s == pytest.approx(at_cap.output_tokens_per_s, rel=0.01)
    # closed loop: the 3*slots waiting clients each wait about three request lifetimes
    lifetime_ms = at_cap.ttft_ms + 8191 * at_cap.tpot_ms
    assert over.ttft_ms == pytest.approx(at_cap.ttft_ms + 3 * lifetime_ms, rel=0.02)


def test_memory_and_fit():
    small = ClusterSpec(gpu="h100-sxm-80gb", num_gpus=1)
    bf16 = estimate_inference(LLAMA, small, load(1), InferenceConfig())
    assert not bf16.fits and bf16.memory_per_gpu_gib > 80
    fp8 = estimate_inference(
        LLAMA,
        ClusterSpec(gpu="h100-sxm-80gb", num_gpus=2),
        load(8),
        InferenceConfig(tp=2, weight_dtype="fp8"),
    )
    assert fp8.fits and fp8.memory_per_gpu_gib < 80
    weights = fp8.memory_breakdown_gib["weights"]
    assert weights == pytest.approx(
        (layer_params(LLAMA) / 2 + LLAMA.embedding_params() * 2 / 2) / 2**30, rel=0.01
    )


def test_prefill_interference_raises_aggregated_tpot_only():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    agg = InferenceConfig(tp=4, weight_dtype="fp8", kv_dtype="fp8")
    dis = InferenceConfig.model_validate(
        {
            "mode": "disaggregated",
            "weight_dtype": "fp8",
            "kv_dtype": "fp8",
            "prefill": {"tp": 4},
            "decode": {"tp": 4},
        }
    )
    a = estimate_inference(LLAMA, cluster, load(32, 8000, 200), agg)
    d = estimate_inference(LLAMA, cluster, load(32, 8000, 200), dis)
    assert a.breakdown["serving.prefill_interference"] > 0.2 * a.tpot_ms
    assert (
        d.breakdown["serving.prefill_interference"] == 0 and d.breakdown["serving.kv_transfer"] > 0
    )
    assert d.tpot_ms < a.tpot_ms


def test_disaggregated_prefill_pool_bounds_throughput():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    config = InferenceConfig.model_validate(
        {
            "mode": "disaggregated",
            "weight_dtype": "fp8",
            "prefill": {"tp": 2, "workers": 1},
            "decode": {"tp": 2, "workers": 3},
        }
    )
    light = estimate_inference(LLAMA, cluster, load(4, 8000, 100), config)
    heavy = estimate_inference(LLAMA, cluster, load(512, 8000, 100), config)
    assert heavy.saturated and heavy.ttft_ms > 10 * light.ttft_ms
    per_request_prefill_s = (
        sum(v for k, v in heavy.breakdown.items() if k.startswith("prefill.")) / 1e3
    )
    assert heavy.output_tokens_per_s == pytest.approx(100 / per_request_prefill_s, rel=0.01)


def test_max_throughput_uses_every_slot_and_batch_caps_trade_tpot():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    full = estimate_inference(
        LLAMA, cluster, load(), InferenceConfig(tp=8, weight_dtype="fp8", kv_dtype="fp8")
    )
    capped = estimate_inference(
        LLAMA,
        cluster,
        load(),
        InferenceConfig(tp=8, weight_dtype="fp8", kv_dtype="fp8", max_batch_size=16),
    )
    assert full.batch_size == full.max_batch_size > 16 and capped.batch_size == 16
    assert capped.tpot_ms < full.tpot_ms and capped.output_tokens_per_s < full.output_tokens_per_s


def test_request_rate_below_and_above_capacity():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    config = InferenceConfig(tp=8, weight_dtype="fp8", kv_dtype="fp8")
    cap = estimate_inference(LLAMA, cluster, load(), config).output_tokens_per_s / 500
    slow = estimate_inference(
        LLAMA,
        cluster,
        InferenceWorkload(input_len=2000, output_len=500, request_rate=0.1 * cap),
        config,
    )
    assert not slow.saturated and slow.output_tokens_per_s == pytest.approx(
        0.1 * cap * 500, rel=1e-6
    )
    fast = estimate_inference(
        LLAMA,
        cluster,
        InferenceWorkload(input_len=2000, output_len=500, request_rate=2 * cap),
        config,
    )
    assert fast.saturated and fast.ttft_ms > 60_000


def test_cost_quality_and_price_override():
    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    config = InferenceConfig(tp=4, weight_dtype="fp8", kv_dtype="fp8")
    est = estimate_inference(LLAMA, cluster, load(64), config)
    price = load_gpu("h200-141gb").price_per_gpu_hour_usd
    assert est.gpus_used == 8
    assert est.cost_per_million_tokens_usd == pytest.approx(
        8 * price / 3600 / est.output_tokens_per_s * 1e6
    )
    cheap = estimate_inference(
        LLAMA,
        ClusterSpec(gpu="h200-141gb", num_gpus=8, price_per_gpu_hour_usd=1.0),
        load(64),
        config,
    )
    assert cheap.cost_per_million_tokens_usd == pytest.approx(
        est.cost_per_million_tokens_usd / price
    )
    assert est.quality_loss_pct == pytest.approx(quality_loss_pct(DType.fp8, DType.fp8))
    assert est.quality_loss_pct > 0
    assert quality_loss_pct(DType.bf16, DType.bf16) == 0
    assert set(est.metrics()) >= {
        "ttft_ms",
        "tpot_ms",
        "quality_loss_pct",
        "cost_per_million_tokens_usd",
    }


def test_every_format_documents_its_source():
    for d in (DType.bf16, DType.fp8, DType.int8, DType.int4, DType.fp4):
        assert weight_format(d).source
    for d in (DType.bf16, DType.fp8, DType.int4):
        assert kv_format(d).source


def _sum_ms(breakdown: dict[str, float], prefix: str, terms: tuple[str, ...] = ()) -> float:
    return sum(
        v for k, v in breakdown.items() if k.startswith(prefix) and k[len(prefix) :] in terms
    )


def test_chunked_prefill_iterations_each_carry_a_decode_step():
    """Aggregated TTFT: the prompts ahead and this prompt's own chunks are prefilled in
    iterations of at most chunk_tokens prompt tokens, each also running the batch's decode
    step; smaller chunks therefore add decode steps to the first token, and nothing else."""
    from cost_models.inference_terms import TERMS
    from cost_models.inference_terms import WORK_TERMS

    cluster = ClusterSpec(gpu="h200-141gb", num_gpus=8)
    config = InferenceConfig(tp=8, weight_dtype="fp8", kv_dtype="fp8")
    base = backend_profile("vllm")
    small = base.model_copy(update={"chunk_tokens": 2048})
    isl, clients = 8000, 16
    big_est = estimate_inference(LLAMA, cluster, load(clients, isl, 500), config, base)
    small_est = estimate_inference(LLAMA, cluster, load(clients, isl, 500), config, small)
    assert not big_est.saturated and not small_est.saturated
    cal = base.calibration
    dec_ms = _sum_ms(big_est.breakdown, "decode_step.", TERMS)
    assert dec_ms == pytest.approx(_sum_ms(small_est.breakdown, "decode_step.", TERMS))
    ahead = cal.prefill_burst_fraction * (clients - 1)  # one worker: every client per rank

    def ttft_ms(est: Any, chunk: int) -> float:
        pre = _sum_ms(est.breakdown, "prefill.", TERMS)
        work = _sum_ms(est.breakdown, "prefill.", WORK_TERMS)
        steps = cal.first_token_steps + ahead * isl / chunk + math.ceil(isl / chunk) - 1
        return pre + ahead * work + steps * dec_ms + 1e3 * cal.request_latency_s

    assert big_est.ttft_ms == pytest.approx(ttft_ms(big_est, 8192), rel=1e-6)
    assert small_est.ttft_ms == pytest.approx(ttft_ms(small_est, 2048), rel=1e-6)
    assert small_est.ttft_ms - big_est.ttft_ms > 3 * dec_ms  # three more own chunks at least
