"""ModelSpec / ClusterSpec / DType: defaults derived from other fields and validation errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from search_spaces.catalog import load_gpu
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec

BASE = {"num_layers": 2, "hidden_size": 1024, "num_attention_heads": 16, "vocab_size": 1000}


def test_model_defaults_are_derived():
    m = ModelSpec(**BASE)
    assert m.name == "custom"
    assert m.num_kv_heads == 16  # MHA unless told otherwise
    assert m.head_dim == 64  # hidden / heads
    assert m.ffn_hidden_size == 4096  # 4 * hidden
    assert m.ffn_activation == "gelu"
    assert m.attention == "mha"
    assert not m.is_moe
    assert m.num_moe_layers == 0
    assert m.active_params() == m.total_params()


def test_dense_param_count_by_hand():
    m = ModelSpec(**BASE)
    h, f, v = 1024, 4096, 1000
    per_layer = 4 * h * h + h + 2 * h * f + h  # attention + its norm, MLP + its norm
    assert m.total_params() == 2 * per_layer + 2 * v * h + h


def test_tied_embeddings_count_once():
    untied = ModelSpec(**BASE)
    tied = ModelSpec(**BASE, tie_word_embeddings=True)
    assert untied.total_params() - tied.total_params() == 1000 * 1024


def test_moe_defaults_and_active_params():
    m = ModelSpec(**BASE, ffn_activation="swiglu", num_experts=8, experts_per_token=2)
    assert m.moe_ffn_hidden_size == m.ffn_hidden_size  # default: the dense width
    assert m.num_moe_layers == 2
    inactive = 2 * 6 * m.expert_params()
    assert m.total_params() - m.active_params() == inactive


def test_moe_layer_interval_and_dense_layers():
    m = ModelSpec(
        **{**BASE, "num_layers": 10},
        num_experts=4,
        experts_per_token=1,
        num_dense_layers=2,
        moe_layer_interval=2,
    )
    assert m.num_moe_layers == 4
    assert m.num_dense_ffn_layers == 6


def test_heads_must_be_multiple_of_kv_heads():
    with pytest.raises(ValidationError, match="multiple of num_kv_heads"):
        ModelSpec(**BASE, num_kv_heads=3)


def test_experts_per_token_bounded_by_experts():
    with pytest.raises(ValidationError, match="experts_per_token"):
        ModelSpec(**BASE, num_experts=4, experts_per_token=5)
    with pytest.raises(ValidationError, match="experts_per_token"):
        ModelSpec(**BASE, num_experts=4, experts_per_token=0)


def test_dense_layers_must_leave_room_for_moe():
    with pytest.raises(ValidationError, match="num_dense_layers"):
        ModelSpec(**BASE, num_experts=4, experts_per_token=1, num_dense_layers=2)


def test_mla_needs_its_fields():
    with pytest.raises(ValidationError, match="attention=mla needs kv_lora_rank"):
        ModelSpec(**BASE, attention="mla")
    with pytest.raises(ValidationError, match="v_head_dim"):
        ModelSpec(
            **BASE, attention="mla", kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16
        )


def test_mla_without_q_lora_projects_queries_directly():
    mla = {"attention": "mla", "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16}
    m = ModelSpec(**BASE, **mla, v_head_dim=32)
    h, a = 1024, 16
    q = h * a * 48
    kv = h * (64 + 16) + 64 + 64 * a * (32 + 32)
    assert m.attention_params_per_layer() == q + kv + a * 32 * h + h
    assert m.q_dim == a * 48


def test_unknown_and_negative_fields_rejected():
    with pytest.raises(ValidationError, match="extra"):
        ModelSpec(**BASE, num_heads=8)
    with pytest.raises(ValidationError):
        ModelSpec(**{**BASE, "num_layers": 0})


def test_cluster_default_node_size_is_gpus_usual_node():
    assert ClusterSpec(gpu="h100-sxm-80gb", num_gpus=64).gpus_per_node == 8
    assert ClusterSpec(gpu="gb200-nvl72", num_gpus=72).gpus_per_node == 4
    # a job smaller than a node uses a partial node
    assert ClusterSpec(gpu="h100-sxm-80gb", num_gpus=2).gpus_per_node == 2
    assert ClusterSpec(gpu="h100-sxm-80gb", num_gpus=64, gpus_per_node=4).gpus_per_node == 4


def test_cluster_bandwidths_and_domain():
    c = ClusterSpec(gpu=load_gpu("h100-sxm-80gb"), num_gpus=16)
    assert c.nvlink_domain_size == 8
    assert c.scaleout_bw_bytes_per_s == 50e9
    assert c.nvlink_bw_bytes_per_s == 450e9
    faster = ClusterSpec(gpu="h100-sxm-80gb", num_gpus=16, scaleout_bandwidth_gb_per_s=100)
    assert faster.scaleout_bw_bytes_per_s == 100e9
    assert ClusterSpec(gpu="gb200-nvl72", num_gpus=16).nvlink_domain_size == 16


def test_cluster_unknown_gpu_is_an_error():
    with pytest.raises(ValidationError, match="closest known ids"):
        ClusterSpec(gpu="h100", num_gpus=8)


@pytest.mark.parametrize(
    ("dtype", "nbytes"),
    [
        (DType.fp32, 4),
        (DType.bf16, 2),
        (DType.fp16, 2),
        (DType.fp8, 1),
        (DType.int8, 1),
        (DType.int4, 0.5),
        (DType.fp4, 0.5),
    ],
)
def test_dtype_bytes(dtype, nbytes):
    assert dtype.bytes == nbytes


def test_every_dtype_has_a_size():
    assert {d.bytes for d in DType} <= {0.5, 1.0, 2.0, 4.0}
    assert DType("bf16") is DType.bf16
