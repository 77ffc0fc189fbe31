"""NeMo / Megatron-Bridge: a YAML override merged onto the model's pretrain recipe.

Keys were matched against Megatron-Bridge's ``ConfigContainer`` (``src/megatron/bridge/training/
config.py`` of NVIDIA-NeMo/Megatron-Bridge main, 2025: sections model, train, dataset,
optimizer, ddp, dist, checkpoint, mixed_precision, env_vars), its recipe override examples
(``examples/recipes/*/conf/*_override_example*.yaml``) and its mixed-precision recipe names
(``training/mixed_precision.py``). The model section carries Megatron-Core's
ModelParallelConfig / TransformerConfig field names; the architecture comes from the recipe.
NeMo 2.0 (``nemo.collections.llm``) spells the same knobs ``trainer.strategy.*`` and ``data.*``;
the equivalent command-line overrides are written as a comment.
"""

from __future__ import annotations

from typing import Any

import yaml

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.specs import DType
from tuner.exporters_common import Notes
from tuner.exporters_common import comment_block
from tuner.exporters_common import half_dtype
from tuner.exporters_common import header_lines
from tuner.exporters_common import is_blackwell

SOURCE = (
    "Megatron-Bridge ConfigContainer (NVIDIA-NeMo/Megatron-Bridge src/megatron/bridge/training/"
    "config.py and mixed_precision.py, main 2025; override examples in examples/recipes)"
)


def model_section(spec: TrainingJobSpec, config: TrainingConfig) -> dict[str, Any]:
    """Parallel layout and recompute as Megatron-Core config fields (vpp: null means none)."""
    c = config
    section: dict[str, Any] = {
        "tensor_model_parallel_size": c.tp,
        "pipeline_model_parallel_size": c.pp,
        "virtual_pipeline_model_parallel_size": c.vpp if c.vpp > 1 else None,
        "context_parallel_size": c.cp,
        "sequence_parallel": c.sequence_parallel and c.tp > 1,
        "seq_length": spec.workload.seq_len,
    }
    if spec.model.is_moe:
        section["expert_model_parallel_size"] = c.ep
        section["expert_tensor_parallel_size"] = c.tp
    if c.recompute == "selective":
        section.update(recompute_granularity="selective", recompute_modules=["core_attn"])
    elif c.recompute == "full":
        section.update(recompute_granularity="full", recompute_method="uniform")
        section["recompute_num_layers"] = 1
    else:
        section["recompute_granularity"] = None
    return section


def sharding_sections(config: TrainingConfig) -> dict[str, dict[str, Any]]:
    """zero1 = distributed optimizer; zero2/zero3 = Megatron-FSDP optim_grads /
    optim_grads_params (Bridge turns the distributed optimizer on for FSDP; set here too)."""
    distopt = config.sharding != "none"
    ddp: dict[str, Any] = {
        "use_distributed_optimizer": distopt,
        "overlap_grad_reduce": True,
        "overlap_param_gather": distopt,
        "grad_reduce_in_fp32": True,
    }
    out: dict[str, dict[str, Any]] = {
        "optimizer": {"use_distributed_optimizer": distopt},
        "ddp": ddp,
    }
    if config.sharding in ("zero2", "zero3"):
        strategy = "optim_grads" if config.sharding == "zero2" else "optim_grads_params"
        ddp.update(use_megatron_fsdp=True, data_parallel_sharding_strategy=strategy)
        out["dist"] = {"use_megatron_fsdp": True}
        out["checkpoint"] = {"ckpt_format": "fsdp_dtensor"}
    return out


def mixed_precision(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> str:
    """A registered Bridge recipe name: current-scaling fp8 on Hopper/Ada, MXFP8 on Blackwell,
    NVFP4 for fp4; ``bf16-mixed`` style names are also accepted by Bridge."""
    half = half_dtype(spec)
    if config.dtype == DType.fp8:
        if half == "fp16":
            return "fp16_with_fp8_current_scaling_mixed"
        return (
            "bf16_with_mxfp8_mixed" if is_blackwell(spec) else "bf16_with_fp8_current_scaling_mixed"
        )
    if config.dtype == DType.fp4:
        notes.add("bf16_with_nvfp4_mixed needs a Blackwell GPU and Transformer Engine >= 2.7")
        return "bf16_with_nvfp4_mixed"
    return f"{half}_mixed"


def nemo2_overrides(spec: TrainingJobSpec, config: TrainingConfig) -> str:
    """The NeMo 2.0 CLI overrides (``nemo llm pretrain --factory <recipe> ...``) for the same
    knobs: MegatronStrategy fields under trainer.strategy, batch sizes under data."""
    c = config
    vpp = c.vpp if c.vpp > 1 else "null"
    pairs = [
        f"trainer.strategy.tensor_model_parallel_size={c.tp}",
        f"trainer.strategy.pipeline_model_parallel_size={c.pp}",
        f"trainer.strategy.virtual_pipeline_model_parallel_size={vpp}",
        f"trainer.strategy.context_parallel_size={c.cp}",
        f"trainer.strategy.sequence_parallel={c.sequence_parallel and c.tp > 1}",
        f"data.micro_batch_size={c.micro_batch_size}",
        f"data.global_batch_size={spec.workload.global_batch_size}",
        f"data.seq_length={spec.workload.seq_len}",
    ]
    if spec.model.is_moe:
        pairs.append(f"trainer.strategy.expert_model_parallel_size={c.ep}")
    return "NeMo 2.0 equivalent: " + " ".join(pairs)


def export_nemo(spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]) -> str:
    """The override YAML; pass it to a Megatron-Bridge recipe script's ``--config-file``."""
    notes = Notes()
    doc: dict[str, Any] = {
        "model": model_section(spec, config),
        "train": {
            "micro_batch_size": config.micro_batch_size,
            "global_batch_size": spec.workload.global_batch_size,
            "train_iters": 100,
        },
        "dataset": {"seq_length": spec.workload.seq_len},
        **sharding_sections(config),
        "mixed_precision": mixed_precision(spec, config, notes),
    }
    if config.sharding not in ("zero2", "zero3") and (config.tp > 1 or config.cp > 1):
        doc["env_vars"] = {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    notes.add(
        f"architecture, tokenizer and data come from the Megatron-Bridge recipe for "
        f"{spec.model.name}; this file overrides the layout, batch and precision only"
    )
    if config.sharding in ("zero2", "zero3") and config.pp > 1:
        notes.add("Megatron-FSDP with pipeline parallelism is not covered by its guide")
    notes.add(nemo2_overrides(spec, config))
    head = comment_block(header_lines(spec, config, metrics, SOURCE, notes))
    return head + yaml.safe_dump(doc, sort_keys=False)
