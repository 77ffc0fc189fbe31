"""Megatron-LM: a ``torchrun pretrain_gpt.py`` launch script for one training configuration.

Flag names and choices were matched against ``megatron/training/arguments.py`` of
NVIDIA/Megatron-LM main (commit 000c4ac, 2025, Megatron-Core 0.14 era) and the Megatron-FSDP user
guide of the Megatron-Core developer docs. The script runs a short measurement on mock data, so
the predicted throughput can be checked before real data and tokenizer are wired in.
"""

from __future__ import annotations

import shlex

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from tuner.exporters_common import Notes
from tuner.exporters_common import architecture_note
from tuner.exporters_common import comment_block
from tuner.exporters_common import data_parallel
from tuner.exporters_common import half_dtype
from tuner.exporters_common import header_lines
from tuner.exporters_common import is_blackwell
from tuner.exporters_common import moe_layer_pattern
from tuner.exporters_common import nodes
from tuner.exporters_common import uses_rope_rmsnorm

SOURCE = (
    "Megatron-LM megatron/training/arguments.py (NVIDIA/Megatron-LM main, commit 000c4ac, 2025) "
    "and the Megatron-FSDP user guide (Megatron-Core developer guide)"
)

Arg = list[str]  # one flag and its values, e.g. ["--tensor-model-parallel-size", "8"]


def _flag(name: str, *values: object) -> Arg:
    return [name, *(str(v) for v in values)]


def parallel_args(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> list[Arg]:
    """tp/pp/cp/vpp/ep. vpp uses --num-virtual-stages-per-pipeline-rank, which states the knob
    directly (the older --num-layers-per-virtual-pipeline-stage needs layers per chunk)."""
    c = config
    args = [
        _flag("--tensor-model-parallel-size", c.tp),
        _flag("--pipeline-model-parallel-size", c.pp),
        _flag("--context-parallel-size", c.cp),
    ]
    if c.vpp > 1:
        args.append(_flag("--num-virtual-stages-per-pipeline-rank", c.vpp))
        if c.pp <= 2:
            notes.add("Megatron needs pp > 2 for the interleaved schedule unless p2p overlap is on")
    if c.sequence_parallel and c.tp > 1:
        args.append(_flag("--sequence-parallel"))
    elif c.sequence_parallel:
        notes.add("sequence_parallel has no effect with tp=1; Megatron turns it off")
    if spec.model.is_moe:
        args.append(_flag("--expert-model-parallel-size", c.ep))
        # paretune shards routed experts over tp inside each ep group (expert TP = tp)
        args.append(_flag("--expert-tensor-parallel-size", c.tp))
    return args


def sharding_args(config: TrainingConfig, notes: Notes) -> list[Arg]:
    """zero1 is the distributed optimizer; zero2/zero3 are Megatron-FSDP with the optim_grads /
    optim_grads_params strategy (the guide's required flags: distributed optimizer, no gradient
    accumulation fusion, fsdp_dtensor checkpoints). Overlap flags match the cost model, which
    hides the data-parallel collectives behind compute."""
    if config.sharding == "none":
        return [_flag("--overlap-grad-reduce")]
    args = [
        _flag("--use-distributed-optimizer"),
        _flag("--overlap-grad-reduce"),
        _flag("--overlap-param-gather"),
    ]
    if config.sharding in ("zero2", "zero3"):
        strategy = "optim_grads" if config.sharding == "zero2" else "optim_grads_params"
        args += [
            _flag("--use-megatron-fsdp"),
            _flag("--data-parallel-sharding-strategy", strategy),
            _flag("--no-gradient-accumulation-fusion"),
            _flag("--ckpt-format", "fsdp_dtensor"),
        ]
        if config.pp > 1:
            notes.add(
                "the Megatron-FSDP guide does not cover pipeline parallelism; if it is rejected, "
                "keep only --use-distributed-optimizer (optimizer state sharded, gradients not: "
                "more memory than predicted)"
            )
    return args


def recompute_args(config: TrainingConfig) -> list[Arg]:
    """selective recomputes the attention core (Megatron's default --recompute-modules
    core_attn, the cost model's assumption); full recomputes every layer from its input."""
    if config.recompute == "selective":
        return [_flag("--recompute-granularity", "selective")]
    if config.recompute == "full":
        return [
            _flag("--recompute-granularity", "full"),
            _flag("--recompute-method", "uniform"),
            _flag("--recompute-num-layers", 1),
        ]
    return []


def precision_args(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> list[Arg]:
    """bf16 params and optimizer always; fp8 GEMMs via Transformer Engine with current (per-
    tensor) scaling on Hopper/Ada and MXFP8 block scaling on Blackwell; fp4 as NVFP4."""
    half = half_dtype(spec)
    args = [_flag(f"--{half}")]
    if half == "fp16":
        notes.add("Volta has no bf16: the script trains in fp16 with dynamic loss scaling")
    if config.dtype == DType.fp8:
        if is_blackwell(spec):
            args += [_flag("--fp8-format", "e4m3"), _flag("--fp8-recipe", "mxfp8")]
        else:
            args += [_flag("--fp8-format", "hybrid"), _flag("--fp8-recipe", "tensorwise")]
    elif config.dtype == DType.fp4:
        args += [_flag("--fp4-format", "e2m1"), _flag("--fp4-recipe", "nvfp4")]
        notes.add("fp4 (NVFP4) training needs Transformer Engine >= 2.7")
    return args


def model_args(model: ModelSpec, seq_len: int, notes: Notes) -> list[Arg]:
    """The architecture, so the script builds the model paretune costed."""
    args = [
        _flag("--num-layers", model.num_layers),
        _flag("--hidden-size", model.hidden_size),
        _flag("--ffn-hidden-size", model.ffn_hidden_size),
        _flag("--num-attention-heads", model.num_attention_heads),
        _flag("--seq-length", seq_len),
        _flag("--max-position-embeddings", seq_len),
    ]
    if model.attention == "mla":
        args += mla_args(model)
    else:
        args.append(_flag("--kv-channels", model.head_dim))
        if model.num_kv_heads != model.num_attention_heads:
            args += [
                _flag("--group-query-attention"),
                _flag("--num-query-groups", model.num_kv_heads),
            ]
    if model.ffn_activation == "swiglu":
        args.append(_flag("--swiglu"))
    if uses_rope_rmsnorm(model):
        args += [_flag("--normalization", "RMSNorm"), _flag("--position-embedding-type", "rope")]
    else:
        args += [
            _flag("--normalization", "LayerNorm"),
            _flag("--position-embedding-type", "learned_absolute"),
        ]
    notes.add(architecture_note(model))
    if not model.tie_word_embeddings:
        args.append(_flag("--untie-embeddings-and-output-weights"))
    if not model.attention_bias:
        args.append(_flag("--disable-bias-linear"))
    return args + moe_args(model)


def mla_args(model: ModelSpec) -> list[Arg]:
    """Multi-latent attention: Megatron's qk-head-dim is the non-rotary part of the head."""
    args = [
        _flag("--multi-latent-attention"),
        _flag("--kv-lora-rank", model.kv_lora_rank),
        _flag("--qk-head-dim", model.qk_nope_head_dim),
        _flag("--qk-pos-emb-head-dim", model.qk_rope_head_dim),
        _flag("--v-head-dim", model.v_head_dim),
    ]
    if model.q_lora_rank:
        args.append(_flag("--q-lora-rank", model.q_lora_rank))
    return args


def moe_args(model: ModelSpec) -> list[Arg]:
    """Routed and shared experts, and which layers are MoE (--moe-layer-freq as a list pattern
    when there are leading dense layers or an interval)."""
    if not model.is_moe:
        return []
    args = [
        _flag("--num-experts", model.num_experts),
        _flag("--moe-router-topk", model.experts_per_token),
        _flag("--moe-ffn-hidden-size", model.moe_ffn_hidden_size),
        _flag("--moe-token-dispatcher-type", "alltoall"),
        _flag("--moe-grouped-gemm"),
    ]
    if model.num_shared_experts:
        assert model.moe_ffn_hidden_size is not None
        size = model.num_shared_experts * model.moe_ffn_hidden_size
        args.append(_flag("--moe-shared-expert-intermediate-size", size))
    if model.num_dense_layers or model.moe_layer_interval > 1:
        args.append(_flag("--moe-layer-freq", _pattern_expression(moe_layer_pattern(model))))
    return args


def _pattern_expression(pattern: list[int]) -> str:
    """Run-length form Megatron's moe_freq_type evaluates, e.g. ``([0]*3+[1]*58)``."""
    runs: list[tuple[int, int]] = []
    for bit in pattern:
        if runs and runs[-1][0] == bit:
            runs[-1] = (bit, runs[-1][1] + 1)
        else:
            runs.append((bit, 1))
    return "(" + "+".join(f"[{bit}]*{n}" for bit, n in runs) + ")"


def run_args(spec: TrainingJobSpec, config: TrainingConfig) -> list[Arg]:
    """Batch sizes plus a short measurement run on mock data with a null tokenizer."""
    return [
        _flag("--micro-batch-size", config.micro_batch_size),
        _flag("--global-batch-size", spec.workload.global_batch_size),
        _flag("--mock-data"),
        _flag("--tokenizer-type", "NullTokenizer"),
        _flag("--vocab-size", spec.model.vocab_size),
        _flag("--train-iters", 100),
        _flag("--lr", "1.0e-4"),
        _flag("--min-lr", "1.0e-5"),
        _flag("--lr-decay-style", "cosine"),
        _flag("--eval-iters", 0),
        _flag("--log-interval", 1),
        _flag("--log-throughput"),
    ]


def megatron_args(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> list[Arg]:
    """Every ``pretrain_gpt.py`` argument for the model, workload and knobs, one flag per item."""
    return (
        parallel_args(spec, config, notes)
        + sharding_args(config, notes)
        + recompute_args(config)
        + precision_args(spec, config, notes)
        + model_args(spec.model, spec.workload.seq_len, notes)
        + run_args(spec, config)
    )


def _env_lines(config: TrainingConfig) -> list[str]:
    """TP/CP comm overlap needs one CUDA connection before Blackwell; Megatron-FSDP needs more."""
    if config.sharding in ("zero2", "zero3"):
        return ["unset CUDA_DEVICE_MAX_CONNECTIONS"]
    if config.tp > 1 or config.cp > 1:
        return ["export CUDA_DEVICE_MAX_CONNECTIONS=1"]
    return []


def export_megatron(
    spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]
) -> str:
    """A bash script: run it on every node with NODE_RANK, MASTER_ADDR, MASTER_PORT set."""
    notes = Notes()
    args = megatron_args(spec, config, notes)
    if data_parallel(spec, config) * config.tp * config.pp * config.cp != spec.cluster.num_gpus:
        notes.add("tp*pp*cp does not divide the GPU count: Megatron will reject this layout")
    notes.add("replace --mock-data and NullTokenizer with --data-path and your tokenizer")
    launcher = (
        f"torchrun --nnodes={nodes(spec)} --nproc-per-node={spec.cluster.gpus_per_node} "
        '--node-rank="${NODE_RANK:-0}" --master-addr="${MASTER_ADDR:-localhost}" '
        '--master-port="${MASTER_PORT:-6000}" pretrain_gpt.py'
    )
    lines = [launcher] + [f"  {shlex.join(a)}" for a in args]
    head = "#!/usr/bin/env bash\n" + comment_block(
        header_lines(spec, config, metrics, SOURCE, notes)
    )
    env = "".join(f"{line}\n" for line in ["set -euo pipefail", *_env_lines(config)])
    return head + env + " \\\n".join(lines) + "\n"
