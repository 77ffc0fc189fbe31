"""Each term of the training step time against a hand computation, plus sanity properties."""

from __future__ import annotations

import itertools
import math

import pytest

from cost_models import EVALUATOR_VERSION
from cost_models import TrainingEstimate
from cost_models import estimate_training
from cost_models.compute import microbatch_compute
from cost_models.flops import forward_flops_per_token
from cost_models.memory import stage_params
from cost_models.plan import make_plan
from cost_models.training import BREAKDOWN_TERMS
from search_spaces.config import TrainingConfig
from search_spaces.objectives import TRAINING_METRICS
from search_spaces.specs import ClusterSpec
from search_spaces.specs import TrainingWorkload
from tests.cost_models.cost_model_specs import ideal_calibration
from tests.cost_models.cost_model_specs import llama_like
from tests.cost_models.cost_model_specs import make_cluster
from tests.cost_models.cost_model_specs import plain_gpt
from tests.cost_models.cost_model_specs import small_moe

PEAK = 1e15  # the test GPU: 1000 TFLOP/s bf16
NVLINK = 400e9
NIC = 50e9


def run(model, num_gpus, seq_len, gbs, cal=None, cluster=None, **knobs) -> TrainingEstimate:
    """Estimate on the test GPU with the ideal calibration; no recompute unless asked."""
    knobs.setdefault("recompute", "none")
    return estimate_training(
        model,
        cluster or make_cluster(num_gpus),
        TrainingWorkload(seq_len=seq_len, global_batch_size=gbs),
        TrainingConfig(**knobs),
        cal or ideal_calibration(),
    )


def _gemm_s(m, n, k, rate=0.5 * PEAK):
    """Forward + both backward GEMMs of a compute-bound linear layer: 3 * 2mnk FLOPs."""
    return 3 * 2 * m * n * k / rate


def _gpt_layer_gemm_s(tokens, rate=0.5 * PEAK):
    """plain_gpt (h=1024, MHA, GeLU f=4096): QKV, output projection, fc1, fc2."""
    h, f = 1024, 4096
    return sum(_gemm_s(tokens, n, k, rate) for n, k in ((3 * h, h), (h, h), (f, h), (h, f)))


def _gpt_attention_s(tokens, seq=2048):
    """FlashAttention of plain_gpt (16 heads of 64): 4d forward and 10d backward FLOPs per
    causal pair, s/2 + 64 keys per query (diagonal blocks whole), at 25% of the peak."""
    pairs = tokens * 16 * (seq / 2 + 64)
    return pairs * (4 + 10) * 64 / (0.25 * PEAK), pairs * 4 * 64 / (0.25 * PEAK)


def test_compute_term_by_hand():
    """One micro-batch of 2048 tokens per GPU: 8 layers of GEMMs and attention, the LM head."""
    est = run(plain_gpt(), 8, 2048, 8, sharding="none")
    attention, _ = _gpt_attention_s(2048)
    expected = 8 * (_gpt_layer_gemm_s(2048) + attention) + _gemm_s(2048, 32000, 1024)
    assert est.breakdown["compute"] == pytest.approx(expected)
    assert est.compute_breakdown["attention"] == pytest.approx(8 * attention)
    assert est.num_microbatches == 1 and est.dp == 8


def test_memory_bound_work_adds_hbm_time():
    model = plain_gpt()
    base = run(model, 8, 2048, 8)
    cal = ideal_calibration(elementwise_passes=10.0, loss_bytes_per_logit=16.0, hbm_efficiency=1)
    slow = run(model, 8, 2048, 8, cal=cal)
    h, f, L, V = 1024, 4096, 8, 32000
    per_token = 10 * 2 * (h + f) * L + 16 * V
    extra = 2048 * per_token / 2000e9
    assert slow.breakdown["compute"] - base.breakdown["compute"] == pytest.approx(extra)


def test_fp8_speeds_up_only_the_layer_gemms_and_adds_casts():
    """fp8 layer GEMMs at twice the rate, plus 4 bytes of casts per GEMM input element
    (forward) and output-gradient element (backward); attention and LM head unchanged."""
    model, cal = plain_gpt(), ideal_calibration(hbm_efficiency=1.0)
    bf16 = run(model, 8, 2048, 8, cal=cal, dtype="bf16")
    fp8 = run(model, 8, 2048, 8, cal=cal, dtype="fp8")
    h, f, tokens = 1024, 4096, 2048
    saved = 8 * (_gpt_layer_gemm_s(tokens) - _gpt_layer_gemm_s(tokens, 2 * 0.5 * PEAK))
    cast_elements = tokens * sum(k + n for n, k in ((3 * h, h), (h, h), (f, h), (h, f)))
    casts = 8 * 4.0 * cast_elements / 2000e9
    assert bf16.breakdown["compute"] - fp8.breakdown["compute"] == pytest.approx(saved - casts)
    assert fp8.compute_breakdown["attention"] == bf16.compute_breakdown["attention"]
    assert fp8.compute_breakdown["lm_head_and_loss"] == bf16.compute_breakdown["lm_head_and_loss"]


def test_recompute_re_runs_forward_work():
    """full: every layer's forward again (GEMMs 1/3, attention forward); selective: the
    attention core's forward only."""
    model = plain_gpt()
    none = run(model, 8, 2048, 8, recompute="none")
    full = run(model, 8, 2048, 8, recompute="full")
    selective = run(model, 8, 2048, 8, recompute="selective")
    _, attention_fwd = _gpt_attention_s(2048)
    extra = 8 * (_gpt_layer_gemm_s(2048) / 3 + attention_fwd)
    assert full.breakdown["compute"] - none.breakdown["compute"] == pytest.approx(extra)
    assert full.compute_breakdown["recompute"] == pytest.approx(extra)
    assert selective.compute_breakdown["recompute"] == pytest.approx(8 * attention_fwd)
    assert full.hfu > full.mfu and none.hfu == pytest.approx(none.mfu)


def test_replicated_kv_heads_cost_compute_when_tp_exceeds_them():
    """8 KV heads at tp=16: every rank still computes one whole KV head's projections."""
    model = llama_like(num_attention_heads=32, num_kv_heads=8)
    fast_hbm = make_cluster(16, memory_bandwidth_gb_per_s=1e6)  # keep skinny GEMMs compute-bound
    tp8 = run(model, 16, 2048, 2, cluster=fast_hbm, tp=8, sequence_parallel=True)
    tp16 = run(model, 16, 2048, 1, cluster=fast_hbm, tp=16, sequence_parallel=True)
    kv_rank = 128  # one head of 128, not 8*128/16 = 64
    per_layer_kv = _gemm_s(2048, 2 * (kv_rank - 64), 4096)
    gemm8, gemm16 = tp8.compute_breakdown["gemm"], tp16.compute_breakdown["gemm"]
    assert gemm16 == pytest.approx(gemm8 / 2 + 8 * per_layer_kv)


def test_moe_experts_are_grouped_gemms_at_the_per_expert_token_count():
    """small_moe (E=128, top-8, f=768, SwiGLU) at ep=8: 16 local experts, each with
    8 ranks * 4096 tokens * 8 / 128 = 2048 tokens, run as grouped GEMMs; the router GEMM; a
    fixed dispatch overhead per local expert and MoE layer."""
    model = small_moe()
    fast_hbm = make_cluster(8, memory_bandwidth_gb_per_s=1e6)  # every GEMM compute-bound
    cal = ideal_calibration(moe_expert_overhead_s=1e-4)
    est = run(model, 8, 4096, 8, cal=cal, cluster=fast_hbm, ep=8)
    tokens, per_expert, h = 4096, 2048, 2048
    attention = _gemm_s(tokens, 4096 + 2 * 512, h) + _gemm_s(tokens, h, 4096)
    experts = 16 * (_gemm_s(per_expert, 2 * 768, h) + _gemm_s(per_expert, h, 768))
    router = _gemm_s(tokens, 128, h)
    assert est.compute_breakdown["gemm"] == pytest.approx(8 * (attention + experts + router))
    assert est.compute_breakdown["moe_overhead"] == pytest.approx(1e-4 * 16 * 8)


def test_tensor_parallel_all_reduces_by_hand():
    """tp=8 in one node, no SP: 4 all-reduces of b*s*h bf16 per layer and micro-batch."""
    model = plain_gpt()
    est = run(model, 8, 2048, 4, tp=8, sequence_parallel=False)
    size = 2048 * 1024 * 2
    all_reduce = 2 * 7 / 8 * size / NVLINK
    assert est.num_microbatches == 4
    assert est.breakdown["tensor_parallel"] == pytest.approx(4 * all_reduce * 8 * 4)
    sp = run(model, 8, 2048, 4, tp=8, sequence_parallel=True)  # AG + RS pairs: same time
    assert sp.breakdown["tensor_parallel"] == pytest.approx(est.breakdown["tensor_parallel"])
    full = run(model, 8, 2048, 4, tp=8, recompute="full")
    assert full.breakdown["tensor_parallel"] == pytest.approx(6 * all_reduce * 8 * 4)
    half = run(model, 8, 2048, 4, cal=ideal_calibration(tp_comm_exposed_fraction=0.5), tp=8)
    assert half.breakdown["tensor_parallel"] == pytest.approx(2 * all_reduce * 8 * 4)


@pytest.mark.parametrize(("pp", "vpp", "gbs"), [(4, 1, 8), (4, 1, 32), (4, 2, 32), (2, 4, 8)])
def test_pipeline_bubble_fraction(pp, vpp, gbs):
    est = run(plain_gpt(), pp, 2048, gbs, pp=pp, vpp=vpp, sharding="none")
    m = est.num_microbatches
    assert m == gbs
    chain = sum(
        est.breakdown[k]
        for k in ("compute", "tensor_parallel", "context_parallel", "expert_all_to_all")
    )
    chain += est.breakdown["pipeline_p2p"]
    assert est.breakdown["pipeline_bubble"] == pytest.approx((pp - 1) / (m * vpp) * chain)


def test_pipeline_p2p_by_hand():
    """pp=2 over two nodes (tp=8 inside each): 2*vpp sends per micro-batch over one NIC."""
    model = plain_gpt()
    est = run(model, 16, 2048, 4, tp=8, pp=2, vpp=2, sequence_parallel=True, sharding="none")
    size = 2048 * 1024 * 2 / 8
    assert est.breakdown["pipeline_p2p"] == pytest.approx(2 * 2 * 4 * size / NIC)


def test_expert_all_to_all_volume():
    """ep=8 in one node: 4 all-to-alls of b*s*topk*h bf16 per MoE layer, (e-1)/e leaves."""
    model = small_moe()
    est = run(model, 8, 4096, 8, ep=8)
    size = 4096 * 8 * 2048 * 2
    per_layer = 4 * 7 / 8 * size / NVLINK
    assert est.breakdown["expert_all_to_all"] == pytest.approx(per_layer * 8 * 1)
    across = run(model, 16, 4096, 16, ep=16)  # 8 of 16 peers behind the NIC
    per_layer = 4 * max(7 / 16 * size / NVLINK, 8 / 16 * size / NIC)
    assert across.breakdown["expert_all_to_all"] == pytest.approx(per_layer * 8 * 1)
    assert run(model, 8, 4096, 8, ep=1).breakdown["expert_all_to_all"] == 0.0


def test_context_parallel_exposed_only_when_chunks_are_small():
    """Ring attention: K/V sent c-1 times forward, K/V and their gradients backward, each
    pass hidden behind the same pass of the blockwise attention as far as it lasts."""
    model = llama_like()  # 32 heads of 128, 8 KV heads
    s, c = 1024, 8  # 128 tokens per rank: the K/V exchange outlasts the block compute
    est = run(model, 8, s, 1, cp=c)
    tokens = s // c
    send = (c - 1) * tokens * 2 * 8 * 128 * 2 / NVLINK
    pairs = tokens * 32 * (s / 2 + 64)
    attn_fwd = pairs * 4 * 128 / (0.25 * PEAK)
    attn_bwd = pairs * 10 * 128 / (0.25 * PEAK)
    assert send > attn_fwd
    expected = 8 * (max(0.0, send - attn_fwd) + max(0.0, 2 * send - attn_bwd))
    assert est.breakdown["context_parallel"] == pytest.approx(expected)
    long = run(model, 2, 65536, 1, cp=2)  # 32k tokens per rank: fully hidden
    assert long.breakdown["context_parallel"] == 0.0


def _plan_and_microbatch(model, num_gpus, seq_len, gbs, **knobs):
    config = TrainingConfig(recompute="none", **knobs)
    workload = TrainingWorkload(seq_len=seq_len, global_batch_size=gbs)
    plan = make_plan(model, make_cluster(num_gpus), workload, config, ideal_calibration())
    return plan, microbatch_compute(plan)


def test_data_parallel_single_bucket_is_exposed():
    """zero1, dp=2 across nodes, stage weights under one 40M bucket: nothing to hide behind,
    fp32 reduce-scatter + bf16 all-gather at one NIC each."""
    model = plain_gpt()
    est = run(model, 16, 2048, 64, tp=8, sharding="zero1")
    psi = stage_params(model, 8, 1, 1).dense
    assert psi < 40e6
    comm = 1 / 2 * psi * 4 / NIC + 1 / 2 * psi * 2 / NIC
    assert est.breakdown["data_parallel"] == pytest.approx(comm)


def test_data_parallel_buckets_hide_behind_the_last_backward_and_first_forward():
    model = llama_like()
    plan, mb = _plan_and_microbatch(model, 16, 4096, 64, tp=8, sharding="zero1")
    est = run(model, 16, 4096, 64, tp=8, sharding="zero1")
    psi = stage_params(model, 8, 1, 1).dense
    reduce, gather = 1 / 2 * psi * 4 / NIC, 1 / 2 * psi * 2 / NIC
    bucket = 40e6 / psi
    expected = max(bucket * reduce, reduce - mb.bwd_s) + max(bucket * gather, gather - mb.fwd_s)
    assert est.breakdown["data_parallel"] == pytest.approx(expected)
    assert 0 < expected < reduce + gather


def test_zero3_gathers_every_microbatch_behind_compute():
    """FSDP: 2 all-gathers of bf16 weights + 1 reduce-scatter of fp32 gradients per
    micro-batch, prefetched behind the micro-batch's compute except the first layer's gather;
    a calibrated share of the rest stays exposed."""
    model = plain_gpt()
    plan, mb = _plan_and_microbatch(model, 16, 2048, 64, tp=8, sharding="zero3")
    params = stage_params(model, 8, 1, 1)
    comm = 1 / 2 * params.dense * (2 + 2 + 4) / NIC
    first = 1 / 2 * params.layer_dense * 2 / NIC
    for share in (0.0, 0.3):
        est = run(
            model,
            16,
            2048,
            64,
            tp=8,
            sharding="zero3",
            cal=ideal_calibration(fsdp_comm_exposed_fraction=share),
        )
        exposed = max(share * (comm - first), comm - first - mb.total_s)
        assert est.breakdown["data_parallel"] == pytest.approx((first + exposed) * plan.m)


def test_optimizer_step_is_memory_bound():
    model = plain_gpt()
    cal = ideal_calibration(hbm_efficiency=1.0)
    none = run(model, 8, 2048, 8, cal=cal, sharding="none")
    psi = stage_params(model, 1, 1, 1).dense
    assert none.breakdown["optimizer"] == pytest.approx(psi * 30 / 2000e9)
    zero1 = run(model, 8, 2048, 8, cal=cal, sharding="zero1")
    assert zero1.breakdown["optimizer"] == pytest.approx(none.breakdown["optimizer"] / 8)


def test_headline_figures_follow_from_the_step_time():
    model = llama_like()
    est = run(model, 16, 4096, 32, tp=2, pp=2, micro_batch_size=2)
    assert list(est.breakdown) == list(BREAKDOWN_TERMS)
    assert est.step_time_s == pytest.approx(sum(est.breakdown.values()))
    tokens = 32 * 4096
    assert est.tokens_per_s == pytest.approx(tokens / est.step_time_s)
    assert est.tokens_per_s_per_gpu == pytest.approx(est.tokens_per_s / 16)
    assert est.flops_per_step == pytest.approx(
        3 * forward_flops_per_token(model, 4096).total * tokens
    )
    assert est.mfu == pytest.approx(est.flops_per_step / (est.step_time_s * 16 * PEAK))
    usd_per_s = 16 * 2.0 / 3600
    assert est.cost_per_million_tokens_usd == pytest.approx(usd_per_s / est.tokens_per_s * 1e6)
    assert est.fits == (est.memory_per_gpu_gib <= 80.0) and est.memory_capacity_gib == 80.0
    assert set(est.metrics()) == set(TRAINING_METRICS)
    assert EVALUATOR_VERSION == "analytical-training-0.2"


def test_more_tensor_parallelism_lowers_memory_of_an_oversize_model():
    model = llama_like(
        num_layers=80, hidden_size=8192, num_attention_heads=64, ffn_hidden_size=28672
    )
    mems = [run(model, 8, 4096, 64, tp=t).memory_per_gpu_gib for t in (1, 2, 4, 8)]
    assert mems == sorted(mems, reverse=True)
    assert not run(model, 8, 4096, 64, tp=1).fits


def test_recompute_trades_memory_for_compute():
    model = llama_like()
    ests = {r: run(model, 8, 4096, 64, recompute=r) for r in ("none", "selective", "full")}
    acts = {r: e.memory_breakdown_gib["activations"] for r, e in ests.items()}
    compute = {r: e.breakdown["compute"] for r, e in ests.items()}
    assert acts["full"] < acts["selective"] <= acts["none"]
    assert compute["full"] > compute["selective"] > compute["none"]


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"tp": 3}, "does not divide num_gpus"),
        ({"micro_batch_size": 3}, "global_batch_size"),
        ({"ep": 2}, "MoE"),
        ({"vpp": 2}, "pp > 1"),
        ({"pp": 8, "vpp": 2}, "num_layers"),
        ({"dtype": "fp4"}, "fp4"),
        ({"dtype": "int8"}, "not a training precision"),
    ],
)
def test_invalid_configs_raise_value_error(knobs, message):
    with pytest.raises(ValueError, match=message):
        run(plain_gpt(), 8, 2048, 16, **knobs)


def test_no_zero_division_for_any_valid_config():
    """Every knob combination either raises ValueError or gives finite positive figures."""
    grid = {
        "tp": [1, 2, 8],
        "pp": [1, 2, 4],
        "cp": [1, 2],
        "ep": [1, 2, 8],
        "vpp": [1, 2],
        "micro_batch_size": [1, 4],
        "sharding": ["none", "zero1", "zero2", "zero3"],
        "recompute": ["none", "selective", "full"],
        "sequence_parallel": [False, True],
        "dtype": ["bf16", "fp8"],
    }
    valid = 0
    for model in (plain_gpt(), small_moe()):
        for values in itertools.product(*grid.values()):
            try:
                est = run(model, 16, 1024, 32, **dict(zip(grid, values, strict=True)))
            except ValueError:
                continue
            valid += 1
            figures = [est.step_time_s, est.tokens_per_s, est.mfu, est.memory_per_gpu_gib]
            assert all(math.isfinite(x) and x > 0 for x in figures)
            assert all(math.isfinite(v) and v >= 0 for v in est.breakdown.values())
    assert valid > 500


def test_v100_has_no_bf16_and_runs_16_bit_at_the_fp16_peak():
    """Volta's tensor cores are fp16 only: a bf16 (or fp16) config computes at 125 TFLOP/s
    and MFU is measured against that peak (fp16 differs only in its fp16 gradients)."""
    cluster = ClusterSpec(gpu="v100-32gb", num_gpus=8)
    workload = TrainingWorkload(seq_len=1024, global_batch_size=16)
    ests = [
        estimate_training(plain_gpt(), cluster, workload, TrainingConfig(dtype=d, tp=2))
        for d in ("bf16", "fp16")
    ]
    assert ests[0].breakdown["compute"] == pytest.approx(ests[1].breakdown["compute"])
    peak = ests[0].flops_per_step / (ests[0].step_time_s * 8 * 125e12)
    assert ests[0].mfu == pytest.approx(peak)
    with pytest.raises(ValueError, match="fp8"):
        estimate_training(plain_gpt(), cluster, workload, TrainingConfig(dtype="fp8"))


def test_gpus_without_nvlink_give_finite_estimates_with_tensor_parallelism():
    for gpu in ("l40s-48gb", "rtx-pro-6000"):
        cluster = ClusterSpec(gpu=gpu, num_gpus=8)
        est = estimate_training(
            llama_like(),
            cluster,
            TrainingWorkload(seq_len=2048, global_batch_size=8),
            TrainingConfig(tp=4, sequence_parallel=True),
        )
        assert math.isfinite(est.step_time_s) and est.breakdown["tensor_parallel"] > 0


def test_cost_uses_the_clusters_price_override_in_both_paths() -> None:
    """``cluster.price_per_gpu_hour_usd`` overrides the catalog price (scalar and vectorised)."""
    from cost_models.vectorised import TrainingBatch
    from cost_models.vectorised import estimate_training_batch
    from search_spaces.catalog import load_model

    model = load_model("llama-3.1-8b")
    workload = TrainingWorkload(seq_len=4096, global_batch_size=64)
    config = TrainingConfig(tp=2, micro_batch_size=1)
    catalog = ClusterSpec(gpu="h100-sxm-80gb", num_gpus=8)
    price = 2 * catalog.gpu.price_per_gpu_hour_usd + 1.0
    override = ClusterSpec(gpu="h100-sxm-80gb", num_gpus=8, price_per_gpu_hour_usd=price)
    base = estimate_training(model, catalog, workload, config)
    paid = estimate_training(model, override, workload, config)
    ratio = price / catalog.gpu.price_per_gpu_hour_usd
    assert paid.step_time_s == base.step_time_s
    assert math.isclose(paid.cost_per_million_tokens_usd, base.cost_per_million_tokens_usd * ratio)
    batch = estimate_training_batch(model, override, workload, TrainingBatch.from_configs([config]))
    assert math.isclose(
        batch.estimate(0).cost_per_million_tokens_usd, paid.cost_per_million_tokens_usd
    )
