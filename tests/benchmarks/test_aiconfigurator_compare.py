"""The AIConfigurator comparison's own parts: reading AIConfigurator's result CSVs (rows as
its 0.12.0 CLI writes them), scoring its picks with paretune's model, and paretune's side of a
scenario through the real tuner path. AIConfigurator itself is not run here (it needs its own
virtual environment and a minute per scenario); the benchmark runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.aiconfigurator_compare import SCENARIOS
from benchmarks.aiconfigurator_compare import describe
from benchmarks.aiconfigurator_compare import paretune_view
from benchmarks.aiconfigurator_compare import parse_aic_results
from benchmarks.aiconfigurator_compare import run_paretune

# First rows of AIConfigurator 0.12.0's best_config_topn.csv for Qwen3-32B FP8 on 8 H200.
AGG = (
    "model,isl,osl,prefix,concurrency,request_rate,bs,global_bs,ttft,tpot,request_latency,"
    "encoder_latency,encoder_memory,seq/s,seq/s/gpu,tokens/s,tokens/s/gpu,tokens/s/user,"
    "num_total_gpus,tp,pp,dp,moe_tp,moe_ep,cp,parallel,gemm,kvcache,fmha,moe,comm,memory,"
    "balance_score,num_ctx_reqs,num_gen_reqs,num_tokens,ctx_tokens,gen_tokens,backend,version,"
    "system,power_w,tokens/s/gpu_cluster\n"
    "Qwen/Qwen3-32B-FP8,4000,500,0,128,6.655,128,128,457.959,38.009,19424.329,0,0.0,6.655,1.664,"
    "3320.817,830.204,26.31,4,4,1,1,1,1,1,tp4pp1dp1etp1ep1,fp8_block,fp8,fp8,fp8_block,half,"
    "30.076,0.256,1.0,127.0,4127.0,4000,127.0,trtllm,1.3.0rc20,h200_sxm,0.0,830.204\n"
)
DISAGG = (
    "model,isl,osl,prefix,concurrency,request_rate,(p)bs,(p)global_bs,(p)workers,(d)bs,"
    "(d)global_bs,(d)workers,ttft,tpot,request_latency,encoder_latency,seq/s,seq/s/gpu,tokens/s,"
    "tokens/s/gpu,tokens/s/user,(p)seq/s/worker,(d)seq/s/worker,num_total_gpus,(p)tp,(p)pp,"
    "(p)dp,(p)moe_tp,(p)moe_ep,(p)cp,(p)parallel,(p)gemm,(p)kvcache,(p)fmha,(p)moe,(p)comm,"
    "(p)memory,(p)backend,(p)version,(p)system,(d)tp,(d)pp,(d)dp,(d)moe_tp,(d)moe_ep,"
    "(d)parallel,(d)gemm,(d)kvcache,(d)fmha,(d)moe,(d)comm,(d)memory,(d)backend,(d)version,"
    "(d)system,(e)workers,(e)tp,(e)pp,(e)bs,(e)parallel,(e)memory,power_w,tokens/s/gpu_cluster\n"
    "Qwen/Qwen3-32B-FP8,4000,500,0,384,15.26,1,1,5,128,128,3,530.869,33.612,17303.257,0.0,"
    "15.26,1.907,7629.75,953.719,29.752,3.391,7.632,8,1,1,1,1,1,1,tp1pp1dp1etp1ep1,fp8_block,"
    "fp8,fp8,fp8_block,half,36.62,trtllm,1.3.0rc20,h200_sxm,1,1,1,1,1,tp1pp1dp1etp1ep1,"
    "fp8_block,fp8,fp8,fp8_block,half,105.841,trtllm,1.3.0rc20,h200_sxm,0,0,0,0,,0.0,0.0,"
    "953.719\n"
)
QWEN = SCENARIOS[0]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    for mode, text in (("agg", AGG), ("disagg", DISAGG)):
        folder = tmp_path / "Qwen" / "Qwen3-32B-FP8_h200_sxm_trtllm" / mode
        folder.mkdir(parents=True)
        (folder / "best_config_topn.csv").write_text(text)
    return tmp_path


def test_reads_both_modes_with_replicas_and_pools(saved: Path):
    (agg, agg_fields), (dis, dis_fields) = parse_aic_results(saved, QWEN)
    assert (agg.mode, agg.ttft_ms, agg.tpot_ms) == ("agg", 457.959, 38.009)
    assert agg.tokens_per_s_per_gpu == 830.204 and agg.tokens_per_s_per_user == 26.31
    assert agg.concurrency == 256  # 128 per worker, two tp4 workers on 8 GPUs
    assert agg_fields == {
        "mode": "aggregated",
        "tp": 4,
        "pp": 1,
        "attention_dp": 1,
        "ep": 1,
        "replicas": 2,
        "max_batch_size": 128,
    }
    assert dis.mode == "disagg" and dis.tokens_per_s_per_gpu == 953.719 and dis.concurrency == 384
    assert dis_fields["prefill"]["workers"] == 5 and dis_fields["decode"]["workers"] == 3
    assert dis_fields["decode"]["max_batch_size"] == 128
    assert "prefill 5x" in dis.config and "decode 3x" in dis.config


def test_missing_results_give_no_picks(tmp_path: Path):
    assert parse_aic_results(tmp_path, QWEN) == []


def test_paretune_scores_aiconfigurators_picks(saved: Path):
    for pick, fields in parse_aic_results(saved, QWEN):
        view = paretune_view(QWEN, fields, pick.concurrency)
        assert view.startswith("TTFT ") and "tok/s/GPU" in view, view
    bad = paretune_view(QWEN, {"mode": "aggregated", "tp": 16}, 8)
    assert bad.startswith("not expressible")


def test_paretune_side_runs_the_tuner_and_reports_both_modes(tmp_path: Path):
    run = run_paretune(QWEN, tmp_path)
    assert run.error is None and run.wall_s > 0
    assert sorted(p.mode for p in run.picks) == ["agg", "disagg"]
    for p in run.picks:
        assert p.ttft_ms <= QWEN.ttft_ms and p.tpot_ms <= QWEN.tpot_ms
        assert p.tokens_per_s_per_gpu > 0 and p.concurrency and p.concurrency >= 1
    assert (tmp_path / "paretune.db").exists()  # stored like `paretune tune` stores a job


def test_describe_spells_pools_and_workers():
    agg = {"mode": "aggregated", "tp": 2, "pp": 1, "attention_dp": 1, "ep": 1}
    assert describe({**agg, "max_batch_size": 32}, 8) == "4x worker tp2pp1 (bs 32 per worker)"
    pools = {
        "mode": "disaggregated",
        "prefill": {"tp": 1, "pp": 1, "attention_dp": 1, "ep": 1, "workers": 2},
        "decode": {"tp": 2, "pp": 1, "attention_dp": 2, "ep": 4, "workers": 1},
    }
    assert describe(pools, 8) == (
        "prefill 2x tp1pp1 + decode 1x tp2pp1dp2ep4 (decode bs memory-bound)"
    )
