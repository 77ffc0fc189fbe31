"""The GPU and model catalogs: every DESIGN.md id loads, and the figures are physically sane."""

from __future__ import annotations

import re

import pytest
import yaml

from search_spaces.catalog import CATALOG_DIR
from search_spaces.catalog import UnknownIdError
from search_spaces.catalog import all_gpus
from search_spaces.catalog import all_models
from search_spaces.catalog import gpu_ids
from search_spaces.catalog import load_gpu
from search_spaces.catalog import load_model
from search_spaces.catalog import model_ids
from search_spaces.specs import DType

DESIGN_GPUS = [
    "v100-32gb",
    "a100-40gb",
    "a100-80gb",
    "h100-sxm-80gb",
    "h100-pcie-80gb",
    "h800-80gb",
    "h200-141gb",
    "gh200-144gb",
    "b200-180gb",
    "b300-288gb",
    "gb200-nvl72",
    "gb300-nvl72",
    "l40s-48gb",
    "rtx-pro-6000",
    "mi300x-192gb",
]
DESIGN_MODELS = [
    "gpt3-175b",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "qwen3-8b",
    "qwen3-32b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "deepseek-v3",
    "gpt-oss-120b",
    "mpt-7b",
    "mpt-30b",
]

FP8_GENERATIONS = {"hopper", "ada", "blackwell", "blackwell-ultra", "cdna3"}
FP4_GENERATIONS = {"blackwell", "blackwell-ultra"}


@pytest.mark.parametrize("gpu_id", DESIGN_GPUS)
def test_design_gpu_ids_load(gpu_id):
    gpu = load_gpu(gpu_id)
    assert gpu.id == gpu_id
    assert gpu.name and gpu.source
    assert gpu.vendor in ("nvidia", "amd")


@pytest.mark.parametrize("model_id", DESIGN_MODELS)
def test_design_model_ids_load(model_id):
    model = load_model(model_id)
    assert model.name == model_id
    assert model.published_params is not None


def test_catalog_lists_are_sorted_and_complete():
    assert set(DESIGN_GPUS) <= set(gpu_ids())
    assert set(DESIGN_MODELS) <= set(model_ids())
    assert gpu_ids() == sorted(gpu_ids())
    assert len(all_gpus()) == len(gpu_ids())
    assert len(all_models()) == len(model_ids())


@pytest.mark.parametrize("gpu", all_gpus(), ids=lambda g: g.id)
def test_gpu_figures_sane(gpu):
    peaks = gpu.peak_tflops_dense
    assert DType.fp16 in peaks, "every catalog GPU has 16-bit tensor cores"
    # 8-bit floating point only from Hopper/Ada/CDNA3 on, 4-bit only on Blackwell
    assert (DType.fp8 in peaks) == (gpu.generation in FP8_GENERATIONS)
    assert (DType.fp4 in peaks) == (gpu.generation in FP4_GENERATIONS)
    assert DType.int4 not in peaks
    if gpu.generation == "volta":
        assert DType.bf16 not in peaks
    else:
        assert peaks[DType.bf16] == peaks[DType.fp16]
    # halving the width never slows the tensor cores down
    assert peaks[DType.fp32] < peaks[DType.fp16]
    if DType.fp8 in peaks:
        # (L40S datasheet: BF16 362.05 but FP8 733, so 2% not exact)
        assert peaks[DType.fp8] == pytest.approx(2 * peaks[DType.bf16], rel=0.02)
    if DType.fp4 in peaks:
        assert 2 * peaks[DType.fp8] <= peaks[DType.fp4] <= 3 * peaks[DType.fp8]
    assert all(10 <= v <= 20_000 for k, v in peaks.items() if k is not DType.int8)
    assert 16 <= gpu.memory_gib <= 300
    assert 500 <= gpu.memory_bandwidth_gb_per_s <= 10_000
    assert 0 <= gpu.nvlink_bandwidth_gb_per_s <= 900
    assert (gpu.nvlink_bandwidth_gb_per_s == 0) == (gpu.nvlink_domain_size == 1)
    assert gpu.nvlink_bandwidth_gb_per_s == 0 or (
        gpu.nvlink_bandwidth_gb_per_s > gpu.scaleout_bandwidth_gb_per_s
    )
    assert 1 <= gpu.scaleout_bandwidth_gb_per_s <= 100
    assert gpu.gpus_per_node in (4, 8)
    assert 0.2 <= gpu.price_per_gpu_hour_usd <= 15


def test_reference_figures():
    """The peaks the measured tables' MFU columns were computed against (README, trap 1)."""
    h100 = load_gpu("h100-sxm-80gb")
    assert h100.peak_tflops_dense[DType.bf16] == 989
    assert h100.peak_tflops_dense[DType.fp8] == 1979
    assert load_gpu("a100-80gb").peak_tflops_dense[DType.bf16] == 312
    h800 = load_gpu("h800-80gb")
    assert h800.peak_tflops_dense == h100.peak_tflops_dense
    assert h800.nvlink_bandwidth_gb_per_s == 200
    b200 = load_gpu("b200-180gb").peak_tflops_dense
    assert (b200[DType.bf16], b200[DType.fp8], b200[DType.fp4]) == (2250, 4500, 9000)
    gb200 = load_gpu("gb200-nvl72")
    assert gb200.peak_tflops_dense[DType.fp4] == 10000
    assert (gb200.nvlink_domain_size, gb200.gpus_per_node) == (72, 4)
    assert gb200.nvlink_bandwidth_gb_per_s == 900
    assert load_gpu("gb300-nvl72").nvlink_domain_size == 72
    assert 13_500 <= load_gpu("b300-288gb").peak_tflops_dense[DType.fp4] <= 15_000
    assert load_gpu("mi300x-192gb").vendor == "amd"


def test_every_figure_has_a_source_comment():
    """Each numeric line of gpus.yaml names where it comes from (DESIGN.md asks for it)."""
    lines = (CATALOG_DIR / "gpus.yaml").read_text().splitlines()
    numeric = re.compile(r"^\s+\w+: [\d.e+]+\s*(#.*)?$")
    uncommented = []
    for i, line in enumerate(lines):
        if not numeric.match(line) or "#" in line:
            continue
        previous = lines[i - 1].strip() if i else ""
        if not previous.startswith("#"):
            uncommented.append(line.strip())
    # gpus_per_node is the system's shape, stated by the nvlink_domain_size comment beside it
    assert [ln for ln in uncommented if not ln.startswith("gpus_per_node")] == []


def test_catalog_files_have_no_unknown_fields():
    """A typo in the YAML would otherwise be caught only at first use."""
    for kind in ("gpus", "models"):
        raw = yaml.safe_load((CATALOG_DIR / f"{kind}.yaml").read_text())
        assert raw and all(isinstance(v, dict) for v in raw.values())


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [("h100", "h100-sxm-80gb"), ("H100-SXM", "h100-sxm-80gb"), ("a100", "a100-80gb")],
)
def test_unknown_gpu_suggests_closest(wanted, expected):
    with pytest.raises(UnknownIdError) as exc:
        load_gpu(wanted)
    message = str(exc.value)
    assert f"'{wanted}'" in message
    assert expected in message
    assert "/v1/catalog/gpus" in message


def test_unknown_model_suggests_closest():
    with pytest.raises(UnknownIdError, match="llama-3.1-70b"):
        load_model("llama3-70b")
    with pytest.raises(ValueError, match="closest known ids"):
        load_model("no-such-model")


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.name)
def test_model_params_within_2pct_of_published(model):
    assert model.published_params
    assert model.total_params() == pytest.approx(model.published_params, rel=0.02)


@pytest.mark.parametrize(
    ("model_id", "active"),
    [
        ("mixtral-8x7b", 12.9e9),  # Mistral AI, "Mixtral of experts"
        ("mixtral-8x22b", 39e9),  # Mistral AI, Mixtral 8x22B announcement
        ("qwen3-30b-a3b", 3.3e9),  # Qwen3-30B-A3B model card
        ("qwen3-235b-a22b", 22e9),  # Qwen3-235B-A22B model card
        ("deepseek-v3", 37e9),  # DeepSeek-V3 technical report
    ],
)
def test_model_active_params(model_id, active):
    assert load_model(model_id).active_params() == pytest.approx(active, rel=0.02)


def test_gpt_oss_active_params_card_convention():
    """OpenAI's 5.13B active excludes the input embedding (a lookup, not a matmul)."""
    m = load_model("gpt-oss-120b")
    assert m.active_params() - m.vocab_size * m.hidden_size == pytest.approx(5.13e9, rel=0.01)


def test_deepseek_v3_is_mla_with_dense_prefix():
    m = load_model("deepseek-v3")
    assert m.attention == "mla"
    assert (m.num_dense_layers, m.num_moe_layers) == (3, 58)
    assert m.num_shared_experts == 1


def test_mpt_is_tied_and_unbiased():
    for model_id in ("mpt-7b", "mpt-30b"):
        m = load_model(model_id)
        assert m.tie_word_embeddings and not m.attention_bias
        assert m.ffn_activation == "gelu"
