"""torchtitan: a TOML job config for ``torchrun -m torchtitan.train --job.config_file``.

Sections and keys were matched against ``torchtitan/config/job_config.py`` of the torchtitan
0.2.0 release on PyPI (the last TOML-configured release; newer main configures jobs in Python),
its model registry (llama3, llama4, qwen3, deepseek_v3 flavors), ``distributed/pipeline_parallel
.py`` (stages from layers per stage) and ``components/quantization`` (float8 / mx converters).
"""

from __future__ import annotations

from typing import Any

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from tuner.exporters_common import Notes
from tuner.exporters_common import architecture_note
from tuner.exporters_common import comment_block
from tuner.exporters_common import data_parallel
from tuner.exporters_common import generation
from tuner.exporters_common import half_dtype
from tuner.exporters_common import header_lines
from tuner.exporters_common import is_blackwell

SOURCE = (
    "torchtitan 0.2.0 (PyPI) torchtitan/config/job_config.py, models/*/__init__.py flavors, "
    "distributed/pipeline_parallel.py, components/quantization"
)

# (layers, hidden, heads, kv heads, experts) -> (torchtitan model name, flavor)
FLAVORS: dict[tuple[int, int, int, int, int], tuple[str, str]] = {
    (32, 4096, 32, 8, 0): ("llama3", "8B"),
    (80, 8192, 64, 8, 0): ("llama3", "70B"),
    (126, 16384, 128, 8, 0): ("llama3", "405B"),
    (36, 4096, 32, 8, 0): ("qwen3", "8B"),
    (40, 5120, 40, 8, 0): ("qwen3", "14B"),
    (64, 5120, 64, 8, 0): ("qwen3", "32B"),
    (48, 2048, 32, 4, 128): ("qwen3", "30B-A3B"),
    (94, 4096, 64, 4, 128): ("qwen3", "235B-A22B"),
    (61, 7168, 128, 128, 256): ("deepseek_v3", "671B"),
}


def model_section(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> dict[str, Any]:
    """torchtitan builds models from registered flavors, so the architecture is matched to one;
    an architecture without a flavor keeps its name and needs a registered TrainSpec."""
    model = spec.model
    key = (
        model.num_layers,
        model.hidden_size,
        model.num_attention_heads,
        model.num_kv_heads,
        model.num_experts,
    )
    name, flavor = FLAVORS.get(key, (model.name, "paretune"))
    if key not in FLAVORS:
        notes.add(
            f"torchtitan 0.2.0 ships no flavor for {model.name}: register a TrainSpec named "
            f"{model.name!r} with flavor 'paretune' for this architecture"
        )
    section: dict[str, Any] = {
        "name": name,
        "flavor": flavor,
        "hf_assets_path": f"./assets/hf/{model.name}",
    }
    converters = _converters(spec, config)
    if converters:
        section["converters"] = converters
    return section


def _converters(spec: TrainingJobSpec, config: TrainingConfig) -> list[str]:
    """float8 (torchao Float8Linear) on Ada/Hopper, MXFP8 on Blackwell; experts too for MoE."""
    if config.dtype != DType.fp8:
        return []
    kind = "mx" if is_blackwell(spec) else "float8"
    experts = [f"quantize.grouped_mm.{kind}"] if spec.model.is_moe else []
    return [f"quantize.linear.{kind}", *experts]


def training_section(spec: TrainingJobSpec, config: TrainingConfig) -> dict[str, Any]:
    """With pp > 1 one step is a single pipeline schedule over all micro-batches
    (local_batch_size = gbs/dp split into micro_batch_size pieces), as paretune models the
    bubble; without pp, local_batch_size is the micro-batch and torchtitan accumulates
    gradients gbs / (local_batch_size * dp) times."""
    gbs = spec.workload.global_batch_size
    local = gbs // data_parallel(spec, config) if config.pp > 1 else config.micro_batch_size
    return {
        "local_batch_size": local,
        "global_batch_size": gbs,
        "seq_len": spec.workload.seq_len,
        "steps": 100,
        "mixed_precision_param": "bfloat16",
        "mixed_precision_reduce": "float32",
    }


def parallelism_section(
    spec: TrainingJobSpec, config: TrainingConfig, notes: Notes
) -> dict[str, Any]:
    c = config
    section: dict[str, Any] = {
        **_data_parallel_keys(spec, c, notes),
        "tensor_parallel_degree": c.tp,
        "context_parallel_degree": c.cp,
        "pipeline_parallel_degree": c.pp,
    }
    if c.tp > 1 and not c.sequence_parallel:
        notes.add("torchtitan's tensor parallel plan always shards norms along the sequence")
    section.update(_pipeline_keys(spec.model, c, notes))
    if spec.model.is_moe and c.ep > 1:
        section["expert_parallel_degree"] = c.ep
        section["expert_tensor_parallel_degree"] = c.tp
        if c.ep % c.cp:
            notes.add(f"torchtitan needs ep % cp == 0 (ep={c.ep}, cp={c.cp})")
    return section


def _data_parallel_keys(
    spec: TrainingJobSpec, config: TrainingConfig, notes: Notes
) -> dict[str, Any]:
    """zero3 is FSDP2 resharding after forward; torchtitan has no optimizer-only or
    gradient-only sharding, so zero1/zero2 become FSDP2 that keeps parameters gathered from
    forward to backward (reshard_after_forward never). Plain DDP only works without other
    parallel dimensions, so sharding=none falls back to FSDP2 when any exists."""
    dp = data_parallel(spec, config)
    other_dims = config.tp * config.pp * config.cp > 1 or (spec.model.is_moe and config.ep > 1)
    if config.sharding == "none" and not other_dims:
        return {"data_parallel_replicate_degree": dp, "data_parallel_shard_degree": 1}
    if config.sharding == "none":
        notes.add(
            "torchtitan's DDP does not combine with tp/pp/cp/ep: FSDP2 is used instead "
            "(less memory, more communication than predicted)"
        )
    elif config.sharding != "zero3":
        notes.add(
            f"{config.sharding}: torchtitan cannot shard only optimizer state/gradients; FSDP2 "
            "with reshard_after_forward=never also shards them at rest and all-gathers "
            "parameters each micro-batch (memory at or below the prediction)"
        )
    reshard = "default" if config.sharding == "zero3" else "never"
    return {
        "data_parallel_replicate_degree": 1,
        "data_parallel_shard_degree": dp,
        "fsdp_reshard_after_forward": reshard,
    }


def _pipeline_keys(model: ModelSpec, config: TrainingConfig, notes: Notes) -> dict[str, Any]:
    """Equal layers per stage, pp*vpp stages, the embedding and head not counted as layers
    (torchtitan's defaults would count each as one), the interleaved schedule for vpp > 1."""
    if config.pp == 1:
        return {}
    stages = config.pp * config.vpp
    if model.num_layers % stages:
        notes.add(f"{model.num_layers} layers do not split evenly into pp*vpp = {stages} stages")
    return {
        "pipeline_parallel_schedule": "Interleaved1F1B" if config.vpp > 1 else "1F1B",
        "pipeline_parallel_microbatch_size": config.micro_batch_size,
        "pipeline_parallel_layers_per_stage": model.num_layers // stages,
        "pipeline_parallel_first_stage_less_layers": 0,
        "pipeline_parallel_last_stage_less_layers": 0,
    }


def activation_section(config: TrainingConfig, notes: Notes) -> dict[str, Any]:
    if config.recompute != "selective":
        return {"mode": config.recompute}
    notes.add(
        "selective recompute is torchtitan's op-level policy, not Megatron's attention-core "
        "recompute that paretune costed"
    )
    return {"mode": "selective", "selective_ac_option": "op"}


def quantize_sections(
    spec: TrainingJobSpec, config: TrainingConfig, fsdp: bool, notes: Notes
) -> dict[str, dict[str, Any]]:
    """fp8 as torchao Float8Linear (tensorwise scaling, float8 all-gather under FSDP); on
    Blackwell MXFP8 via the mx converter; fp4 is not offered."""
    if config.dtype == DType.fp4:
        notes.add("torchtitan 0.2.0 has no fp4 training: this config trains in bf16")
        return {}
    if config.dtype != DType.fp8:
        return {}
    sections: dict[str, dict[str, Any]]
    if is_blackwell(spec):
        sections = {
            "quantize.linear.mx": {"recipe_name": "mxfp8_cublas", "filter_fqns": ["output"]}
        }
        if spec.model.is_moe:
            sections["quantize.grouped_mm.mx"] = {"recipe_name": "mxfp8", "fqns": ["experts"]}
        return sections
    if generation(spec) not in ("hopper", "ada"):
        notes.add("float8 needs compute capability 8.9+ (Ada/Hopper)")
    sections = {
        "quantize.linear.float8": {
            "enable_fsdp_float8_all_gather": fsdp,
            "precompute_float8_dynamic_scale_for_fsdp": fsdp,
            "filter_fqns": ["output"],
        }
    }
    if spec.model.is_moe:
        sections["quantize.grouped_mm.float8"] = {"fqns": ["experts"]}
        notes.add("float8 grouped GEMMs for experts are a torchao prototype (nightly build)")
    return sections


def compile_section(spec: TrainingJobSpec, config: TrainingConfig, notes: Notes) -> dict[str, Any]:
    """torch.compile on, as paretune's throughput assumes fused kernels; torchtitan 0.2.0's
    MXFP8 path rejects compiling the model together with tensor parallelism."""
    components = ["model", "loss"]
    if config.dtype == DType.fp8 and is_blackwell(spec) and config.tp > 1:
        components = ["loss"]
        notes.add("MXFP8 with tp > 1 cannot compile the model in torchtitan 0.2.0: loss only")
    return {"enable": True, "components": components}


def toml_value(value: Any) -> str:
    """The TOML literal of a str, bool, int, float or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dump_toml(sections: dict[str, dict[str, Any]]) -> str:
    out = []
    for name, table in sections.items():
        out.append(f"\n[{name}]\n")
        out += [f"{key} = {toml_value(value)}\n" for key, value in table.items()]
    return "".join(out)


def export_torchtitan(
    spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]
) -> str:
    """The job config; launch with ``torchrun ... -m torchtitan.train --job.config_file``."""
    notes = Notes()
    parallelism = parallelism_section(spec, config, notes)
    fsdp = parallelism["data_parallel_shard_degree"] > 1
    sections: dict[str, dict[str, Any]] = {
        "job": {"dump_folder": "./outputs", "description": f"paretune: {spec.model.name}"},
        "model": model_section(spec, config, notes),
        "training": training_section(spec, config),
        "parallelism": parallelism,
        "activation_checkpoint": activation_section(config, notes),
        "compile": compile_section(spec, config, notes),
    }
    sections.update(quantize_sections(spec, config, fsdp, notes))
    if half_dtype(spec) == "fp16":
        notes.add("torchtitan mixes precision in bfloat16 only, which Volta lacks")
    notes.add(architecture_note(spec.model))
    notes.add("training.dataset defaults to c4_test: set dataset/dataset_path for real data")
    head = comment_block(header_lines(spec, config, metrics, SOURCE, notes))
    return head + dump_toml(sections)
