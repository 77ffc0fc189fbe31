"""Hugging Face config.json import: every shipped config maps to its published size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from search_spaces.catalog import load_model
from search_spaces.hf_import import HFConfigError
from search_spaces.hf_import import load_hf_config_file
from search_spaces.hf_import import model_from_hf_config
from search_spaces.hf_import import supported_model_types
from search_spaces.job_spec import parse_job_spec

# File stem (``org--repo``) -> published TOTAL parameters, with the source.
PUBLISHED_TOTAL: dict[str, float] = {
    # Hugging Face model pages (safetensors): 8,030,261,248 / 70,553,706,496 / 405,853,388,800
    "meta-llama--Meta-Llama-3.1-8B": 8.03e9,
    "meta-llama--Meta-Llama-3.1-70B": 70.55e9,
    "meta-llama--Meta-Llama-3.1-405B": 405.85e9,
    # Meta "The Llama 4 herd" (Apr 2025): 109B and 400B total, 17B active; both include the
    # vision encoder that a text-only import leaves out (~1%)
    "meta-llama--Llama-4-Scout-17B-16E-Instruct": 109e9,
    "meta-llama--Llama-4-Maverick-17B-128E-Instruct": 400e9,
    # Qwen3 model cards: 8.2B, 32.8B, 30.5B (3.3B active), 235B (22B active)
    "Qwen--Qwen3-8B": 8.2e9,
    "Qwen--Qwen3-32B": 32.8e9,
    "Qwen--Qwen3-30B-A3B": 30.5e9,
    "Qwen--Qwen3-235B-A22B": 235e9,
    # Mistral AI announcements: 46.7B (12.9B active), 141B (39B active)
    "mistralai--Mixtral-8x7B-v0.1": 46.7e9,
    "mistralai--Mixtral-8x22B-v0.1": 141e9,
    # DeepSeek-V3 technical report: 671B main model (685B on the Hub includes the 14B MTP module)
    "deepseek-ai--DeepSeek-V3": 671e9,
    # OpenAI gpt-oss model card: 116.83B (5.13B active) and 20.91B (3.61B active)
    "openai--gpt-oss-120b": 116.83e9,
    "openai--gpt-oss-20b": 20.91e9,
    # MiniMaxAI/MiniMax-M2.5 model page: 229B (announced as "230B total, 10B active")
    "MiniMaxAI--MiniMax-M2.5": 229e9,
}

# Published ACTIVE parameters, in the publisher's convention (see the ids for which).
PUBLISHED_ACTIVE: dict[str, float] = {
    "Qwen--Qwen3-30B-A3B": 3.3e9,
    "Qwen--Qwen3-235B-A22B": 22e9,
    "deepseek-ai--DeepSeek-V3": 37e9,
    "mistralai--Mixtral-8x7B-v0.1": 12.9e9,
    "mistralai--Mixtral-8x22B-v0.1": 39e9,
    "meta-llama--Llama-4-Scout-17B-16E-Instruct": 17e9,
    "meta-llama--Llama-4-Maverick-17B-128E-Instruct": 17e9,
}
# OpenAI counts active parameters without the input embedding (a table lookup).
PUBLISHED_ACTIVE_WITHOUT_INPUT_EMBEDDING: dict[str, float] = {
    "openai--gpt-oss-120b": 5.13e9,
    "openai--gpt-oss-20b": 3.61e9,
}

# Shipped config -> the catalog entry it must equal.
CATALOG_TWIN: dict[str, str] = {
    "meta-llama--Meta-Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama--Meta-Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama--Meta-Llama-3.1-405B": "llama-3.1-405b",
    "Qwen--Qwen3-8B": "qwen3-8b",
    "Qwen--Qwen3-32B": "qwen3-32b",
    "Qwen--Qwen3-30B-A3B": "qwen3-30b-a3b",
    "Qwen--Qwen3-235B-A22B": "qwen3-235b-a22b",
    "mistralai--Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "mistralai--Mixtral-8x22B-v0.1": "mixtral-8x22b",
    "deepseek-ai--DeepSeek-V3": "deepseek-v3",
    "openai--gpt-oss-120b": "gpt-oss-120b",
}


def _stem(path: Path) -> str:
    return path.name.removesuffix("_config.json")


def _configs(reference_dir: Path) -> list[Path]:
    files = sorted((reference_dir / "hf_configs").glob("*.json"))
    assert files, "no hf_configs shipped"
    return files


@pytest.fixture(scope="module")
def shipped(reference_dir: Path) -> dict[str, dict[str, Any]]:
    return {_stem(p): json.loads(p.read_text()) for p in _configs(reference_dir)}


def test_every_shipped_config_is_in_the_table(shipped):
    """A new file in hf_configs/ must get a published size here, or this test says so."""
    assert sorted(shipped) == sorted(PUBLISHED_TOTAL)


def test_every_shipped_config_imports_within_2pct(shipped):
    errors = {}
    for stem, cfg in shipped.items():
        model = model_from_hf_config(cfg)
        errors[stem] = model.total_params() / PUBLISHED_TOTAL[stem] - 1
    assert {k: round(v, 4) for k, v in errors.items() if abs(v) > 0.02} == {}


@pytest.mark.parametrize("stem", sorted(PUBLISHED_ACTIVE))
def test_active_params(shipped, stem):
    model = model_from_hf_config(shipped[stem])
    assert model.active_params() == pytest.approx(PUBLISHED_ACTIVE[stem], rel=0.03)


@pytest.mark.parametrize("stem", sorted(PUBLISHED_ACTIVE_WITHOUT_INPUT_EMBEDDING))
def test_active_params_without_input_embedding(shipped, stem):
    model = model_from_hf_config(shipped[stem])
    active = model.active_params() - model.vocab_size * model.hidden_size
    assert active == pytest.approx(PUBLISHED_ACTIVE_WITHOUT_INPUT_EMBEDDING[stem], rel=0.01)


def _architecture(model) -> dict[str, Any]:
    return model.model_dump(exclude={"name", "published_params"})


@pytest.mark.parametrize(("stem", "catalog_id"), sorted(CATALOG_TWIN.items()))
def test_catalog_model_equals_its_hf_import(shipped, stem, catalog_id):
    imported = model_from_hf_config(shipped[stem], name=catalog_id)
    assert _architecture(imported) == _architecture(load_model(catalog_id))
    assert imported.name == catalog_id


def test_family_specific_mappings(shipped):
    scout = model_from_hf_config(shipped["meta-llama--Llama-4-Scout-17B-16E-Instruct"])
    maverick = model_from_hf_config(shipped["meta-llama--Llama-4-Maverick-17B-128E-Instruct"])
    assert (scout.num_moe_layers, scout.num_shared_experts) == (48, 1)
    assert (maverick.num_moe_layers, maverick.num_dense_ffn_layers) == (24, 24)
    assert (maverick.ffn_hidden_size, maverick.moe_ffn_hidden_size) == (16384, 8192)
    ds = model_from_hf_config(shipped["deepseek-ai--DeepSeek-V3"])
    assert ds.attention == "mla" and ds.num_dense_layers == 3 and ds.q_lora_rank == 1536
    oss = model_from_hf_config(shipped["openai--gpt-oss-120b"])
    assert oss.attention_bias and oss.head_dim == 64 and oss.experts_per_token == 4
    mm = model_from_hf_config(shipped["MiniMaxAI--MiniMax-M2.5"])
    assert (mm.num_experts, mm.experts_per_token, mm.num_shared_experts) == (256, 8, 0)


def test_default_name(shipped):
    cfg = shipped["Qwen--Qwen3-8B"]
    assert model_from_hf_config(cfg).name == "qwen3"
    assert model_from_hf_config({**cfg, "_name_or_path": "Qwen/Qwen3-8B"}).name == "Qwen/Qwen3-8B"
    local = {**cfg, "_name_or_path": "/models/ckpt/qwen3-8b-sft"}
    assert model_from_hf_config(local).name == "qwen3-8b-sft"
    assert model_from_hf_config(cfg, name="mine").name == "mine"
    llama4 = shipped["meta-llama--Llama-4-Scout-17B-16E-Instruct"]
    assert model_from_hf_config(llama4).name == "llama4"


# -- other families, from configs written the way transformers/llm-foundry write them -----------

GPT2_XL = {
    "model_type": "gpt2",
    "n_layer": 48,
    "n_embd": 1600,
    "n_head": 25,
    "n_inner": None,
    "vocab_size": 50257,
    "activation_function": "gelu_new",
}

MPT_7B = {  # mosaicml/mpt-7b config.json (the fields that matter)
    "model_type": "mpt",
    "n_layers": 32,
    "d_model": 4096,
    "n_heads": 32,
    "expansion_ratio": 4,
    "vocab_size": 50432,
    "no_bias": True,
    "attn_config": {"attn_type": "multihead_attention", "alibi": True},
}


def test_gpt2_style_names():
    m = model_from_hf_config(GPT2_XL)
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.head_dim) == (48, 1600, 25, 64)
    assert m.ffn_hidden_size == 6400 and m.ffn_activation == "gelu"
    assert m.tie_word_embeddings and m.attention_bias
    # GPT-2 XL is 1.558B (OpenAI); ModelSpec leaves out 1.6M position weights and MLP biases
    assert m.total_params() == pytest.approx(1.558e9, rel=0.01)


def test_mpt_names_match_catalog():
    m = model_from_hf_config(MPT_7B, name="mpt-7b")
    assert _architecture(m) == _architecture(load_model("mpt-7b"))


def test_mpt_grouped_query_and_glu():
    cfg = {
        **MPT_7B,
        "attn_config": {"attn_type": "grouped_query_attention", "kv_n_heads": 8},
        "ffn_config": {"ffn_type": "mptglu", "ffn_hidden_size": 11008},
    }
    m = model_from_hf_config(cfg)
    assert (m.num_kv_heads, m.ffn_activation, m.ffn_hidden_size) == (8, "swiglu", 11008)


def test_llama_2_7b_and_multimodal_nesting():
    llama2 = {
        "model_type": "llama",
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "intermediate_size": 11008,
        "hidden_act": "silu",
        "vocab_size": 32000,
    }
    assert _architecture(model_from_hf_config(llama2)) == _architecture(load_model("llama-2-7b"))
    wrapped = {"model_type": "mistral3", "text_config": {**llama2, "model_type": "mistral"}}
    assert model_from_hf_config(wrapped).total_params() == load_model("llama-2-7b").total_params()


def test_qwen2_moe_shared_expert():
    cfg = {  # Qwen/Qwen1.5-MoE-A2.7B config.json
        "model_type": "qwen2_moe",
        "num_hidden_layers": 24,
        "hidden_size": 2048,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "intermediate_size": 5632,
        "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632,
        "num_experts": 60,
        "num_experts_per_tok": 4,
        "decoder_sparse_step": 1,
        "vocab_size": 151936,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    }
    m = model_from_hf_config(cfg)
    assert m.num_shared_experts == 4
    assert m.total_params() == pytest.approx(14.3e9, rel=0.02)  # Qwen1.5-MoE-A2.7B card: 14.3B


def test_supported_types_listed():
    types = supported_model_types()
    for t in ("llama", "mixtral", "qwen3_moe", "deepseek_v3", "llama4", "gpt_oss", "minimax_m2"):
        assert t in types


# -- errors --------------------------------------------------------------------------------------


def _llama8b(shipped) -> dict[str, Any]:
    return dict(shipped["meta-llama--Meta-Llama-3.1-8B"])


def test_missing_key_is_named(shipped):
    cfg = _llama8b(shipped)
    del cfg["hidden_size"]
    with pytest.raises(HFConfigError, match="'hidden_size'"):
        model_from_hf_config(cfg)


def test_wrong_type_is_named(shipped):
    cfg = {**_llama8b(shipped), "num_hidden_layers": "32"}
    with pytest.raises(ValueError, match="'num_hidden_layers' must be a whole number"):
        model_from_hf_config(cfg)


def test_inconsistent_heads(shipped):
    cfg = {**_llama8b(shipped), "num_key_value_heads": 5}
    with pytest.raises(HFConfigError, match="'num_key_value_heads' \\(5\\) must divide"):
        model_from_hf_config(cfg)


def test_head_dim_needed_when_not_divisible(shipped):
    cfg = {**_llama8b(shipped), "num_attention_heads": 24, "num_key_value_heads": 8}
    cfg["hidden_size"] = 4100
    with pytest.raises(HFConfigError, match="add head_dim"):
        model_from_hf_config(cfg)


def test_top_k_above_experts(shipped):
    cfg = {**shipped["mistralai--Mixtral-8x7B-v0.1"], "num_experts_per_tok": 9}
    with pytest.raises(HFConfigError, match="'num_experts_per_tok' \\(9\\) exceeds"):
        model_from_hf_config(cfg)


def test_top_k_spellings_disagree(shipped):
    cfg = {**shipped["openai--gpt-oss-120b"], "experts_per_token": 2}
    with pytest.raises(HFConfigError, match="disagree"):
        model_from_hf_config(cfg)


def test_layer_types_length_checked(shipped):
    cfg = {**shipped["openai--gpt-oss-120b"], "num_hidden_layers": 30}
    with pytest.raises(HFConfigError, match="'layer_types' lists 36 layers"):
        model_from_hf_config(cfg)


def test_mla_key_missing(shipped):
    cfg = dict(shipped["deepseek-ai--DeepSeek-V3"])
    del cfg["kv_lora_rank"]
    with pytest.raises(HFConfigError, match="'kv_lora_rank'"):
        model_from_hf_config(cfg)


def test_nested_key_named_with_its_path(shipped):
    cfg = json.loads(json.dumps(shipped["meta-llama--Llama-4-Scout-17B-16E-Instruct"]))
    del cfg["text_config"]["num_local_experts"]
    with pytest.raises(HFConfigError, match="'text_config.num_local_experts'"):
        model_from_hf_config(cfg)


def test_unknown_moe_type_rejected():
    cfg = {
        "model_type": "mystery_moe",
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "vocab_size": 100,
        "num_experts": 4,
    }
    with pytest.raises(HFConfigError, match="no mapping"):
        model_from_hf_config(cfg)


def test_not_a_mapping():
    with pytest.raises(HFConfigError, match="config.json object"):
        model_from_hf_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_errors_are_value_errors_in_job_specs(shipped):
    """Through the job spec the message survives as one readable validation error."""
    cfg = {**_llama8b(shipped), "num_key_value_heads": 5}
    spec = {
        "model": {"hf_config": cfg},
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 8},
        "workload": {"seq_len": 4096, "global_batch_size": 8},
    }
    with pytest.raises(ValueError, match="num_key_value_heads"):
        parse_job_spec(spec)
    ok = parse_job_spec({**spec, "model": {"hf_config": _llama8b(shipped), "name": "l8"}})
    assert ok.model.name == "l8"
    assert ok.model.total_params() == load_model("llama-3.1-8b").total_params()


# -- reading files -------------------------------------------------------------------------------


def test_load_file_and_directory(tmp_path, reference_dir):
    src = reference_dir / "hf_configs" / "Qwen--Qwen3-8B_config.json"
    assert load_hf_config_file(src)["model_type"] == "qwen3"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(src.read_text())
    assert load_hf_config_file(str(ckpt))["hidden_size"] == 4096


def test_load_missing_file(tmp_path):
    with pytest.raises(HFConfigError, match="does not exist"):
        load_hf_config_file(tmp_path / "nope.json")
    with pytest.raises(HFConfigError, match="does not exist"):
        load_hf_config_file(tmp_path)  # a directory without config.json


def test_load_bad_json(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{'model_type': 'llama'}")
    with pytest.raises(HFConfigError, match="not valid JSON \\(line 1"):
        load_hf_config_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(HFConfigError, match="not an object"):
        load_hf_config_file(bad)
