"""The vocabulary of paretune: hardware, architecture and workload specs (frozen pydantic).

Architecture, deployment knobs and workload are separate types with no runtime handles, so a
spec can be hashed, stored and sent to a Ray worker as plain data. Units live in field names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from typing import Self

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator


class DType(StrEnum):
    """Numeric formats; the enum carries the physics so callers need no dtype if-chains."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"
    fp4 = "fp4"

    @property
    def bytes(self) -> float:
        """Storage bytes per element (4-bit formats pack two per byte)."""
        return _DTYPE_BYTES[self]


_DTYPE_BYTES: dict[DType, float] = {
    DType.fp32: 4.0,
    DType.bf16: 2.0,
    DType.fp16: 2.0,
    DType.fp8: 1.0,
    DType.int8: 1.0,
    DType.int4: 0.5,
    DType.fp4: 0.5,
}


class Frozen(BaseModel):
    """Base for every spec: immutable, unknown fields rejected (a typo is an error, not a no-op)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class GPUSpec(Frozen):
    """Datasheet figures of one accelerator. Calibration constants live elsewhere."""

    id: str = Field(description="Catalog id, e.g. h100-sxm-80gb.")
    name: str = Field(description="Marketing name.")
    vendor: str = "nvidia"
    generation: str = Field(description="Architecture generation: volta, ampere, hopper, ...")
    peak_tflops_dense: dict[DType, float] = Field(
        description="Dense (not sparse) tensor-core peak TFLOP/s per dtype; absent = unsupported."
    )
    memory_gib: float = Field(gt=0, description="HBM capacity in GiB.")
    memory_bandwidth_gb_per_s: float = Field(gt=0, description="HBM bandwidth, GB/s.")
    nvlink_bandwidth_gb_per_s: float = Field(
        ge=0, description="Scale-up (NVLink/xGMI) bandwidth per GPU per direction, GB/s."
    )
    nvlink_domain_size: int = Field(ge=1, description="GPUs in one scale-up (NVLink) domain.")
    scaleout_bandwidth_gb_per_s: float = Field(
        gt=0, description="Default scale-out (IB/RoCE) bandwidth per GPU per direction, GB/s."
    )
    gpus_per_node: int = Field(ge=1, description="GPUs per server/tray in the usual system.")
    sm_count: int = Field(
        default=0,
        ge=0,
        description="Streaming multiprocessors (AMD: compute units) that run GEMM tiles in waves; "
        "0 = unknown (cost models then skip wave quantisation).",
    )
    price_per_gpu_hour_usd: float = Field(ge=0, description="Typical cloud price per GPU-hour.")
    source: str = Field(default="", description="Where the figures come from.")

    def supports(self, dtype: DType) -> bool:
        """True when the GPU has tensor-core support for ``dtype`` GEMMs."""
        return dtype in self.peak_tflops_dense

    def peak_flops(self, dtype: DType) -> float:
        """Dense peak in FLOP/s for ``dtype``."""
        return self.peak_tflops_dense[dtype] * 1e12


class ClusterSpec(Frozen):
    """A homogeneous GPU cluster."""

    gpu: GPUSpec
    num_gpus: int = Field(ge=1, le=1_000_000, description="Total GPUs used by the job.")
    gpus_per_node: int = Field(default=0, ge=0, description="0 = the GPU's usual node size.")
    scaleout_bandwidth_gb_per_s: float | None = Field(
        default=None, gt=0, description="Override of the GPU's default scale-out bandwidth."
    )
    price_per_gpu_hour_usd: float | None = Field(
        default=None, ge=0, description="Override of the GPU's catalog price per GPU-hour."
    )

    @field_validator("gpu", mode="before")
    @classmethod
    def _resolve_gpu(cls, value: object) -> object:
        """A catalog id becomes its datasheet entry; an inline GPU spec stays as given."""
        if isinstance(value, str):
            from search_spaces.catalog import load_gpu

            return load_gpu(value)
        return value

    @model_validator(mode="after")
    def _default_node_size(self) -> Self:
        if self.gpus_per_node == 0:
            object.__setattr__(self, "gpus_per_node", min(self.gpu.gpus_per_node, self.num_gpus))
        return self

    @property
    def nvlink_domain_size(self) -> int:
        """GPUs that share the scale-up fabric: the NVLink domain, at most the cluster."""
        return min(max(self.gpu.nvlink_domain_size, 1), self.num_gpus)

    @property
    def gpu_hour_price_usd(self) -> float:
        """Price per GPU-hour: the cluster's override, else the catalog price."""
        if self.price_per_gpu_hour_usd is not None:
            return self.price_per_gpu_hour_usd
        return self.gpu.price_per_gpu_hour_usd

    @property
    def scaleout_bw_bytes_per_s(self) -> float:
        gb = self.scaleout_bandwidth_gb_per_s or self.gpu.scaleout_bandwidth_gb_per_s
        return gb * 1e9

    @property
    def nvlink_bw_bytes_per_s(self) -> float:
        return self.gpu.nvlink_bandwidth_gb_per_s * 1e9


class ModelSpec(Frozen):
    """A decoder-only transformer architecture (dense, GQA/MQA, MoE, MLA)."""

    name: str = "custom"
    num_layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_kv_heads: int = Field(default=0, ge=0, description="0 = num_attention_heads (MHA).")
    head_dim: int = Field(default=0, ge=0, description="0 = hidden_size / num_attention_heads.")
    ffn_hidden_size: int = Field(default=0, ge=0, description="0 = 4 * hidden_size.")
    ffn_activation: Literal["gelu", "swiglu"] = "gelu"
    vocab_size: int = Field(ge=1)
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    num_experts: int = Field(default=0, ge=0, description="Routed experts; 0 = dense.")
    experts_per_token: int = Field(default=0, ge=0)
    moe_ffn_hidden_size: int | None = Field(default=None, ge=1)
    num_shared_experts: int = Field(default=0, ge=0)
    num_dense_layers: int = Field(default=0, ge=0, description="Leading dense layers (MoE).")
    moe_layer_interval: int = Field(
        default=1, ge=1, description="Every n-th layer after the dense ones is MoE (Llama 4: 2)."
    )
    sliding_window: int = Field(
        default=0, ge=0, description="Attention window of the sliding-window layers; 0 = none."
    )
    sliding_window_layers: int = Field(
        default=0, ge=0, description="Layers that attend only to the last sliding_window tokens."
    )
    attention: Literal["mha", "mla"] = "mha"
    q_lora_rank: int | None = Field(default=None, ge=1, description="MLA query compression.")
    kv_lora_rank: int | None = Field(default=None, ge=1, description="MLA KV latent size.")
    qk_nope_head_dim: int | None = Field(default=None, ge=1)
    qk_rope_head_dim: int | None = Field(default=None, ge=1)
    v_head_dim: int | None = Field(default=None, ge=1)
    published_params: float | None = Field(
        default=None, gt=0, description="Published total parameter count, for reference."
    )

    @model_validator(mode="after")
    def _derive_defaults(self) -> Self:
        if self.num_kv_heads == 0:
            object.__setattr__(self, "num_kv_heads", self.num_attention_heads)
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.ffn_hidden_size == 0:
            object.__setattr__(self, "ffn_hidden_size", 4 * self.hidden_size)
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.num_experts:
            if not 1 <= self.experts_per_token <= self.num_experts:
                raise ValueError(
                    f"experts_per_token must be between 1 and num_experts ({self.num_experts})"
                )
            if self.moe_ffn_hidden_size is None:
                object.__setattr__(self, "moe_ffn_hidden_size", self.ffn_hidden_size)
            if self.num_dense_layers >= self.num_layers:
                raise ValueError("num_dense_layers must be smaller than num_layers")
        if self.attention == "mla":
            missing = [
                f
                for f in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
                if getattr(self, f) is None
            ]
            if missing:
                raise ValueError(f"attention=mla needs {', '.join(missing)}")
        return self

    # -- derived architecture figures ---------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def num_moe_layers(self) -> int:
        if not self.is_moe:
            return 0
        return (self.num_layers - self.num_dense_layers) // self.moe_layer_interval

    @property
    def num_dense_ffn_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices per MLP: 3 for gated (SwiGLU), 2 otherwise."""
        return 3 if self.ffn_activation == "swiglu" else 2

    @property
    def q_dim(self) -> int:
        """Width of all query heads together."""
        if self.attention == "mla":
            assert self.qk_nope_head_dim and self.qk_rope_head_dim
            return self.num_attention_heads * (self.qk_nope_head_dim + self.qk_rope_head_dim)
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the K (or V) projection of all KV heads (MHA/GQA)."""
        return self.num_kv_heads * self.head_dim

    def attention_params_per_layer(self) -> int:
        """Weights of one attention block (projections, biases, and its norm)."""
        h = self.hidden_size
        if self.attention == "mla":
            assert self.kv_lora_rank and self.qk_nope_head_dim and self.qk_rope_head_dim
            assert self.v_head_dim
            a = self.num_attention_heads
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * a * qk
            else:
                q = h * a * qk
            kv = (
                h * (self.kv_lora_rank + self.qk_rope_head_dim)
                + self.kv_lora_rank
                + self.kv_lora_rank * a * (self.qk_nope_head_dim + self.v_head_dim)
            )
            o = a * self.v_head_dim * h
            return q + kv + o + h
        proj = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        bias = (self.q_dim + 2 * self.kv_dim + h) if self.attention_bias else 0
        return proj + bias + h

    def dense_mlp_params(self) -> int:
        return self.mlp_matrices * self.hidden_size * self.ffn_hidden_size + self.hidden_size

    def expert_params(self) -> int:
        """Weights of one routed expert."""
        assert self.moe_ffn_hidden_size is not None
        return self.mlp_matrices * self.hidden_size * self.moe_ffn_hidden_size

    def moe_mlp_params(self) -> int:
        """One MoE block: router, routed experts, shared experts, norm."""
        router = self.hidden_size * self.num_experts
        experts = (self.num_experts + self.num_shared_experts) * self.expert_params()
        return router + experts + self.hidden_size

    def embedding_params(self) -> int:
        """Input embedding plus the output projection unless tied."""
        per = self.vocab_size * self.hidden_size
        return per if self.tie_word_embeddings else 2 * per

    def total_params(self) -> int:
        """All parameters, embeddings included."""
        layers = self.num_layers * self.attention_params_per_layer()
        layers += self.num_dense_ffn_layers * self.dense_mlp_params()
        if self.is_moe:  # moe_mlp_params() needs moe_ffn_hidden_size, set only for MoE
            layers += self.num_moe_layers * self.moe_mlp_params()
        return layers + self.embedding_params() + self.hidden_size

    def active_params(self) -> int:
        """Parameters touched per token (routed experts counted top-k times)."""
        if not self.is_moe:
            return self.total_params()
        inactive = (self.num_experts - self.experts_per_token) * self.expert_params()
        return self.total_params() - self.num_moe_layers * inactive


class TrainingWorkload(Frozen):
    seq_len: int = Field(ge=1, le=10_000_000, description="Tokens per sequence.")
    global_batch_size: int = Field(ge=1, description="Sequences per optimizer step.")


class InferenceWorkload(Frozen):
    input_len: int = Field(ge=1, description="Prompt tokens per request.")
    output_len: int = Field(ge=1, description="Generated tokens per request.")
    concurrency: int | None = Field(default=None, ge=1, description="Requests in flight.")
    request_rate: float | None = Field(default=None, gt=0, description="Arrivals, req/s.")
    ttft_ms: float | None = Field(default=None, gt=0, description="Time-to-first-token SLO.")
    tpot_ms: float | None = Field(default=None, gt=0, description="Time-per-output-token SLO.")

    @model_validator(mode="after")
    def _one_load(self) -> Self:
        if self.concurrency is not None and self.request_rate is not None:
            raise ValueError("give either concurrency or request_rate, not both")
        return self
