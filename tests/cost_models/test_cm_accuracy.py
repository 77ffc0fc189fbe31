"""The accuracy package: row conversion, fitting, the calibration file and the report."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import yaml

from cost_models.accuracy import fit
from cost_models.accuracy.calibration_file import render_calibration
from cost_models.accuracy.report import build_report
from cost_models.accuracy.rows import DEEPSPEED_2021
from cost_models.accuracy.rows import LEGACY
from cost_models.accuracy.rows import Inexpressible
from cost_models.accuracy.rows import convert
from cost_models.accuracy.rows import load_reference
from cost_models.accuracy.training import score_rows
from cost_models.accuracy.training import source_family
from cost_models.accuracy.training import spearman
from cost_models.plan import MODERN


@pytest.fixture(scope="module")
def reference(reference_dir):
    return load_reference(reference_dir)


def _by_id(reference, row_id):
    rows, left_out = reference
    found = [r for r in rows if r.row_id == row_id] + [x for x in left_out if x.row_id == row_id]
    assert found, row_id
    return found[0]


@pytest.mark.parametrize(
    ("row_id", "reason"),
    [
        ("T0229", "sft workload"),
        ("T0244", "tp*pp*dp*cp = 2 but num_gpus = 8"),
        ("T0527", "not published: tp, pp, dp"),
        ("T0571", "global_batch_seqs"),
        ("T0538", "micro-batch size not published"),
    ],
)
def test_inexpressible_rows_carry_their_reason(reference, row_id, reason):
    assert reason in _by_id(reference, row_id).reason


def test_conventions_are_recorded_as_assumptions(reference):
    gpt3 = _by_id(reference, "T0217")  # NeMo GPT3-5B: vocab not published
    assert gpt3.model.vocab_size == 51200 and any("vocab" in a for a in gpt3.assumptions)
    sc21 = _by_id(reference, "T0545")  # SC'21 PTD-P: legacy Megatron, ffn and recompute implied
    assert sc21.framework is LEGACY and sc21.config.recompute == "full"
    assert sc21.model.ffn_hidden_size == 4 * sc21.model.hidden_size
    assert sc21.derived_from_tflops
    zero3 = _by_id(reference, "T0539")  # SC'21 Table 2: DeepSpeed ZeRO-3, no model parallel
    assert zero3.framework is DEEPSPEED_2021 and zero3.config.sharding == "zero3"
    assert zero3.config.recompute == "full" and zero3.config.micro_batch_size == 4
    bridge = _by_id(reference, "T0357")  # Bridge Qwen3 MoE: everything published
    assert bridge.framework is MODERN and not bridge.assumptions
    assert bridge.config.ep == 16 and bridge.config.sharding == "zero1"
    assert str(bridge.config.dtype) == "fp8"
    foundry = _by_id(reference, "T0089")
    assert foundry.config.sharding == "zero3" and foundry.model.tie_word_embeddings


def test_tflops_rows_recover_the_sources_tokens_per_s(reference):
    """SC'21 eq. 3 turns Table 2's 144 TFLOP/s for GPT-175B into about 100 tokens/s/GPU."""
    row = _by_id(reference, "T0539")
    assert row.measured_tokens_per_s_per_gpu == pytest.approx(100.0, rel=0.01)


def test_precision_and_sharding_strings():
    base = {"workload": "pretrain", "gpu_type": "nope", "tp": "1", "pp": "1", "dp": "1"}
    with pytest.raises(Inexpressible, match="no catalog entry"):
        convert({**base, "global_batch_seqs": "1", "cp": "", "num_gpus": "1"})


def test_source_families_group_releases():
    assert source_family("nvidia_megatron-bridge_26.04.01") == "nvidia_megatron-bridge"
    assert source_family("megatron_sc21_table2") == "megatron_sc21"
    assert source_family("mosaicml_llm-foundry") == "mosaicml_llm-foundry"


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_fit_recovers_known_constants(reference):
    """Rows whose 'measurements' come from known constants: the fit finds those constants."""
    rows = [r for r in reference[0] if r.source_group.startswith("nvidia_megatron-bridge_26.04")]
    truth = fit.entries_from([], [])
    truth["blackwell"] = {"gemm_efficiency_fp8": 0.6, "gemm_efficiency_fp4": 0.3}
    lookup = fit.calibration_lookup(truth)
    synthetic = [
        dataclasses.replace(r.row, measured_tokens_per_s_per_gpu=r.predicted_tokens_per_s_per_gpu)
        for r in score_rows(rows, lookup)[0]
    ]
    entries = fit.fit_constants(synthetic, max_evals=40)
    assert entries["blackwell"]["gemm_efficiency_fp8"] == pytest.approx(0.6, rel=0.05)
    assert entries["blackwell"]["gemm_efficiency_fp4"] == pytest.approx(0.3, rel=0.05)


def test_calibration_file_round_trips():
    entries = fit.entries_from([], [])
    entries["hopper"] = {"gemm_efficiency_fp8": 0.5234, "tp_comm_exposed_fraction": 1.2e-4}
    text = render_calibration(entries, n_rows=10)
    data = yaml.safe_load(text)
    assert set(data) == {"default", "hopper"}
    assert data["hopper"]["gemm_efficiency_fp8"] == pytest.approx(0.523)
    assert data["hopper"]["tp_comm_exposed_fraction"] == pytest.approx(1.2e-4)
    for value in data["default"].values():
        assert isinstance(value, int | float)
    assert "[FITTED per generation]" in text and "[FIXED]" in text


def test_report_sections_and_inference_hook(reference_dir, monkeypatch):
    module = types.ModuleType("cost_models.accuracy.inference")
    module.inference_report_sections = lambda path: ["## Inference\n\nfrom the hook"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cost_models.accuracy.inference", module)
    text = build_report(reference_dir, loso=False)
    for heading in ("## Summary", "## Per source group", "## Rows left out", "## Ranking"):
        assert heading in text
    assert "T0244" in text and text.rstrip().endswith("from the hook")
