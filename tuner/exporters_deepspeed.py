"""DeepSpeed: a ``ds_config.json`` plus the Megatron-DeepSpeed arguments that go with it.

Config keys were matched against DeepSpeed 0.19.8 (``deepspeed/runtime/constants.py``,
``runtime/zero/config.py``, ``runtime/activation_checkpointing/config.py``; the pipeline engine's
"ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism" and native MoE's "not supported
with ZeRO Stage 3" checks). Companion flags were matched against ``megatron/arguments.py`` of
deepspeedai/Megatron-DeepSpeed (main, 2024). JSON has no comments, so what cannot be expressed
goes into the top-level ``paretune`` object, which DeepSpeed ignores.
"""

from __future__ import annotations

import json
from typing import Any

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from tuner.exporters_common import Notes
from tuner.exporters_common import architecture_note
from tuner.exporters_common import data_parallel
from tuner.exporters_common import half_dtype
from tuner.exporters_common import header_lines
from tuner.exporters_common import micro_batches
from tuner.exporters_common import nodes
from tuner.exporters_common import uses_rope_rmsnorm

SOURCE = (
    "DeepSpeed 0.19.8 runtime config (constants.py, zero/config.py, activation_checkpointing/"
    "config.py) and deepspeedai/Megatron-DeepSpeed megatron/arguments.py (main, 2024)"
)
ZERO_STAGE = {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3}


def zero_stage(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> int:
    """The ZeRO stage for the sharding knob, lowered where DeepSpeed refuses the combination."""
    stage = ZERO_STAGE[config.sharding]
    if stage >= 2 and config.pp > 1:
        notes.add(
            f"DeepSpeed's pipeline engine rejects ZeRO-{stage} with pp > 1: stage 1 is used "
            "(gradients not sharded: more memory than predicted)"
        )
        stage = 1
    if stage == 3 and spec.model.is_moe:
        notes.add(
            "native DeepSpeed MoE is not supported with ZeRO stage 3: stage 2 is used "
            "(parameters not sharded: more memory than predicted)"
        )
        stage = 2
    return stage


def zero_section(stage: int) -> dict[str, Any]:
    """Overlap on, as the cost model hides data-parallel collectives behind compute."""
    zero: dict[str, Any] = {"stage": stage}
    if stage == 0:
        return zero
    zero.update({"overlap_comm": True, "contiguous_gradients": True, "reduce_scatter": True})
    if stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": 50_000_000,
                "stage3_param_persistence_threshold": 100_000,
                "stage3_max_live_parameters": 1_000_000_000,
            }
        )
    return zero


def ds_config(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> dict[str, Any]:
    """train_batch_size = micro batch * accumulation * dp, which DeepSpeed asserts."""
    layers_per_stage = spec.model.num_layers // config.pp
    ds: dict[str, Any] = {
        "train_batch_size": spec.workload.global_batch_size,
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": micro_batches(spec, config),
        "gradient_clipping": 1.0,
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
        "zero_optimization": zero_section(zero_stage(spec, config, notes)),
        half_dtype(spec): {"enabled": True},
    }
    if config.recompute == "full":
        ds["activation_checkpointing"] = {
            "partition_activations": False,
            "contiguous_memory_optimization": False,
            "cpu_checkpointing": False,
            "number_checkpoints": layers_per_stage,
            "synchronize_checkpoint_boundary": False,
            "profile": False,
        }
    if config.dtype == DType.fp8:
        notes.add("DeepSpeed's config has no fp8 setting: fp8 GEMMs come from Transformer Engine")
    elif config.dtype == DType.fp4:
        notes.add(
            "fp4 training is not expressible in DeepSpeed or Megatron-DeepSpeed: bf16 is used"
        )
    return ds


def parallel_args(config: TrainingConfig, notes: Notes) -> list[str]:
    """Megatron tensor/pipeline parallel; context parallel becomes DeepSpeed-Ulysses."""
    args = ["--tensor-model-parallel-size", str(config.tp)]
    if config.pp > 1:
        args += ["--pipeline-model-parallel-size", str(config.pp)]
    else:
        args += ["--no-pipeline-parallel"]
    if config.vpp > 1:
        notes.add(f"vpp={config.vpp}: DeepSpeed's pipeline engine has no interleaved schedule")
    if config.cp > 1:
        args += ["--ds-sequence-parallel-size", str(config.cp)]
        notes.add(
            "cp>1 runs as DeepSpeed-Ulysses (all-to-all over heads), not Megatron's ring "
            "context parallelism that paretune modelled; heads must divide by tp*cp"
        )
    if config.sequence_parallel and config.tp > 1:
        if config.cp > 1:
            notes.add("Megatron-DeepSpeed cannot combine --sequence-parallel with Ulysses: omitted")
        else:
            args.append("--sequence-parallel")
    return args


def model_args(model: ModelSpec, config: TrainingConfig, seq_len: int, notes: Notes) -> list[str]:
    """Architecture flags as Megatron-DeepSpeed spells them (lower-case rmsnorm, --num-key-
    value-heads, --topk); MLA and leading dense layers have no flag there."""
    args = [
        "--num-layers", str(model.num_layers),
        "--hidden-size", str(model.hidden_size),
        "--ffn-hidden-size", str(model.ffn_hidden_size),
        "--num-attention-heads", str(model.num_attention_heads),
        "--num-key-value-heads", str(model.num_kv_heads),
        "--kv-channels", str(model.head_dim),
        "--seq-length", str(seq_len),
        "--max-position-embeddings", str(seq_len),
    ]  # fmt: skip
    if model.ffn_activation == "swiglu":
        args.append("--swiglu")
    if uses_rope_rmsnorm(model):
        args += ["--normalization", "rmsnorm", "--use-rotary-position-embeddings"]
    notes.add(architecture_note(model))
    if not model.tie_word_embeddings:
        args.append("--untie-embeddings-and-output-weights")
    if not model.attention_bias:
        args.append("--disable-bias-linear")
    if model.attention == "mla":
        notes.add("Megatron-DeepSpeed has no multi-latent attention: use Megatron-LM for MLA")
    return args + moe_args(model, config, notes)


def moe_args(model: ModelSpec, config: TrainingConfig, notes: Notes) -> list[str]:
    if not model.is_moe:
        return []
    if model.num_dense_layers or model.num_shared_experts:
        notes.add("leading dense layers and shared experts have no Megatron-DeepSpeed flag")
    return [
        "--num-experts", str(model.num_experts),
        "--moe-expert-parallel-size", str(config.ep),
        "--topk", str(model.experts_per_token),
        "--expert-interval", str(model.moe_layer_interval),
        "--create-moe-param-group",
    ]  # fmt: skip


def run_args(spec: TrainingJobSpec, config: TrainingConfig, stage: int) -> list[str]:
    """Batch, precision, recompute and the DeepSpeed hook-up."""
    args = [
        "--micro-batch-size", str(config.micro_batch_size),
        "--global-batch-size", str(spec.workload.global_batch_size),
        f"--{half_dtype(spec)}",
        "--deepspeed", "--deepspeed_config", "ds_config.json",
        "--zero-stage", str(stage),
    ]  # fmt: skip
    if config.recompute == "full":
        args += ["--checkpoint-activations", "--deepspeed-activation-checkpointing"]
    elif config.recompute == "selective":
        args += ["--recompute-granularity", "selective"]
    if config.dtype == DType.fp8:
        args += ["--fp8-hybrid", "--transformer-impl", "transformer_engine"]
    return args


def companion_args(
    spec: TrainingJobSpec, config: TrainingConfig, stage: int, notes: Notes
) -> list[str]:
    """The Megatron-DeepSpeed ``pretrain_gpt.py`` arguments that match the config."""
    return (
        parallel_args(config, notes)
        + model_args(spec.model, config, spec.workload.seq_len, notes)
        + run_args(spec, config, stage)
    )


def export_deepspeed(
    spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]
) -> str:
    """ds_config.json; ``paretune.megatron_deepspeed_args`` holds the matching pretrain_gpt.py
    arguments for Megatron-DeepSpeed, whose ``--deepspeed_config`` points at this file."""
    notes = Notes()
    ds = ds_config(spec, config, notes)
    args = companion_args(spec, config, ds["zero_optimization"]["stage"], notes)
    notes.add(f"data-parallel size seen by DeepSpeed: {data_parallel(spec, config)}")
    launcher = f"deepspeed --num_nodes {nodes(spec)} --num_gpus {spec.cluster.gpus_per_node}"
    ds["paretune"] = {
        "header": header_lines(spec, config, metrics, SOURCE, Notes()),
        "notes": notes.lines,
        "launch": f"{launcher} pretrain_gpt.py <megatron_deepspeed_args> <data args>",
        "megatron_deepspeed_args": args,
        "predicted": metrics,
    }
    return json.dumps(ds, indent=2) + "\n"
