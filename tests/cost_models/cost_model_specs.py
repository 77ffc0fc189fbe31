"""Inline specs for the cost-model tests: round numbers, so expected values can be hand-computed.

A plain module (not a conftest) so test files import the builders by name.
"""

from __future__ import annotations

from typing import Any

from cost_models import Calibration
from cost_models import load_calibration
from search_spaces.specs import ClusterSpec
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec


def make_gpu(**over: Any) -> GPUSpec:
    """A made-up GPU with round figures: 1000 TFLOP/s bf16, 2000 fp8, 400 GB/s NVLink x 8."""
    data: dict[str, Any] = {
        "id": "test-gpu",
        "name": "Test GPU",
        "generation": "test",
        "peak_tflops_dense": {"bf16": 1000.0, "fp8": 2000.0},
        "memory_gib": 80.0,
        "memory_bandwidth_gb_per_s": 2000.0,
        "nvlink_bandwidth_gb_per_s": 400.0,
        "nvlink_domain_size": 8,
        "scaleout_bandwidth_gb_per_s": 50.0,
        "gpus_per_node": 8,
        "price_per_gpu_hour_usd": 2.0,
    }
    data.update(over)
    return GPUSpec(**data)


def make_cluster(num_gpus: int = 8, **gpu_over: Any) -> ClusterSpec:
    return ClusterSpec(gpu=make_gpu(**gpu_over), num_gpus=num_gpus)


def ideal_calibration(**over: Any) -> Calibration:
    """Round efficiencies, no memory-bound work or kernel overheads, no latency, everything
    exposed (the test GPU has no SM count, so GEMMs see no wave quantisation)."""
    base = load_calibration("default").model_dump()
    base.update(
        gemm_efficiency_bf16=0.5,
        gemm_efficiency_fp8=0.5,
        gemm_efficiency_fp4=0.5,
        gemm_tile_overhead_k=0.0,
        attention_efficiency=0.25,
        attention_softmax_flops_per_pair=0.0,
        attention_tile_overhead_keys=0.0,
        unfused_softmax_bytes_per_pair=0.0,
        moe_expert_overhead_s=0.0,
        elementwise_passes=0.0,
        loss_bytes_per_logit=0.0,
        nvlink_efficiency=1.0,
        scaleout_efficiency=1.0,
        nvlink_latency_s=0.0,
        scaleout_latency_s=0.0,
        tp_comm_exposed_fraction=1.0,
        ep_comm_exposed_fraction=1.0,
        fsdp_comm_exposed_fraction=0.0,
        pp_p2p_exposed_fraction=1.0,
        working_margin_gib=0.0,
        fragmentation_fraction=0.0,
    )
    base.update(over)
    return Calibration(**base)


def plain_gpt(**over: Any) -> ModelSpec:
    """A GPT-2/3-style layer stack: MHA, GeLU, f = 4h (Korthikanti's setting)."""
    data: dict[str, Any] = {
        "name": "gpt-test",
        "num_layers": 8,
        "hidden_size": 1024,
        "num_attention_heads": 16,
        "vocab_size": 32000,
    }
    data.update(over)
    return ModelSpec(**data)


def llama_like(**over: Any) -> ModelSpec:
    """GQA + SwiGLU (Llama 3 8B proportions, fewer layers)."""
    data: dict[str, Any] = {
        "name": "llama-test",
        "num_layers": 8,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "ffn_hidden_size": 14336,
        "ffn_activation": "swiglu",
        "vocab_size": 128256,
    }
    data.update(over)
    return ModelSpec(**data)


def small_moe(**over: Any) -> ModelSpec:
    """Qwen3-30B-A3B proportions with fewer layers."""
    data: dict[str, Any] = {
        "name": "moe-test",
        "num_layers": 8,
        "hidden_size": 2048,
        "num_attention_heads": 32,
        "num_kv_heads": 4,
        "head_dim": 128,
        "ffn_hidden_size": 6144,
        "ffn_activation": "swiglu",
        "vocab_size": 151936,
        "num_experts": 128,
        "experts_per_token": 8,
        "moe_ffn_hidden_size": 768,
    }
    data.update(over)
    return ModelSpec(**data)
