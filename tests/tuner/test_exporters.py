"""Every training export format, generated from real catalog specs and parsed back.

Shell scripts go through shlex, JSON through json, TOML through tomllib and YAML through
yaml.safe_load; each flag or key must be one the target framework accepts (the verified lists
below, transcribed from the sources named in each exporter module) and carry the knob's value.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from search_spaces.job_spec import parse_job_spec
from tuner.exporters import TRAINING_EXPORTERS
from tuner.exporters import export
from tuner.kinds import job_kind
from tuner.training_kind import build_training_space

# Megatron-LM megatron/training/arguments.py (NVIDIA/Megatron-LM main, commit 000c4ac).
MEGATRON_FLAGS = {
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
    "--num-virtual-stages-per-pipeline-rank", "--sequence-parallel",
    "--expert-model-parallel-size", "--expert-tensor-parallel-size",
    "--use-distributed-optimizer", "--overlap-grad-reduce", "--overlap-param-gather",
    "--use-megatron-fsdp", "--data-parallel-sharding-strategy",
    "--no-gradient-accumulation-fusion", "--ckpt-format", "--recompute-granularity",
    "--recompute-method", "--recompute-num-layers", "--bf16", "--fp16", "--fp8-format",
    "--fp8-recipe", "--fp4-format", "--fp4-recipe", "--num-layers", "--hidden-size",
    "--ffn-hidden-size", "--num-attention-heads", "--seq-length", "--max-position-embeddings",
    "--kv-channels", "--group-query-attention", "--num-query-groups", "--multi-latent-attention",
    "--kv-lora-rank", "--qk-head-dim", "--qk-pos-emb-head-dim", "--v-head-dim", "--q-lora-rank",
    "--swiglu", "--normalization", "--position-embedding-type",
    "--untie-embeddings-and-output-weights", "--disable-bias-linear", "--num-experts",
    "--moe-router-topk", "--moe-ffn-hidden-size", "--moe-token-dispatcher-type",
    "--moe-grouped-gemm", "--moe-shared-expert-intermediate-size", "--moe-layer-freq",
    "--micro-batch-size", "--global-batch-size", "--mock-data", "--tokenizer-type",
    "--vocab-size", "--train-iters", "--lr", "--min-lr", "--lr-decay-style", "--eval-iters",
    "--log-interval", "--log-throughput",
}  # fmt: skip
MEGATRON_CHOICES = {
    "--recompute-granularity": {"full", "selective"},
    "--recompute-method": {"uniform", "block"},
    "--fp8-format": {"e4m3", "hybrid"},
    "--fp8-recipe": {"tensorwise", "delayed", "mxfp8", "blockwise", "custom"},
    "--fp4-format": {"e2m1"},
    "--fp4-recipe": {"nvfp4", "custom"},
    "--normalization": {"LayerNorm", "RMSNorm"},
    "--position-embedding-type": {"learned_absolute", "rope", "mrope", "relative", "none"},
    "--data-parallel-sharding-strategy": {"no_shard", "optim", "optim_grads", "optim_grads_params"},
    "--ckpt-format": {"torch", "torch_dist", "zarr", "torch_dcp", "fsdp_dtensor"},
    "--moe-token-dispatcher-type": {"allgather", "alltoall", "flex"},
    "--lr-decay-style": {"constant", "linear", "cosine", "inverse-square-root", "WSD"},
}
# deepspeedai/Megatron-DeepSpeed megatron/arguments.py, plus deepspeed.add_config_arguments.
MEGATRON_DEEPSPEED_FLAGS = {
    "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--no-pipeline-parallel",
    "--ds-sequence-parallel-size", "--sequence-parallel", "--num-layers", "--hidden-size",
    "--ffn-hidden-size", "--num-attention-heads", "--num-key-value-heads", "--kv-channels",
    "--seq-length", "--max-position-embeddings", "--swiglu", "--normalization",
    "--use-rotary-position-embeddings", "--untie-embeddings-and-output-weights",
    "--disable-bias-linear", "--num-experts", "--moe-expert-parallel-size", "--topk",
    "--expert-interval", "--create-moe-param-group", "--micro-batch-size", "--global-batch-size",
    "--bf16", "--fp16", "--deepspeed", "--deepspeed_config", "--zero-stage",
    "--checkpoint-activations", "--deepspeed-activation-checkpointing", "--recompute-granularity",
    "--fp8-hybrid", "--transformer-impl",
}  # fmt: skip
# DeepSpeed 0.19.8 runtime/constants.py, zero/config.py, activation_checkpointing/config.py.
DS_TOP_KEYS = {
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
    "gradient_clipping", "steps_per_print", "wall_clock_breakdown", "zero_optimization", "bf16",
    "fp16", "activation_checkpointing",
}  # fmt: skip
DS_ZERO_KEYS = {
    "stage", "overlap_comm", "contiguous_gradients", "reduce_scatter",
    "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold",
    "stage3_max_live_parameters",
}  # fmt: skip
DS_ACT_KEYS = {
    "partition_activations", "contiguous_memory_optimization", "cpu_checkpointing",
    "number_checkpoints", "synchronize_checkpoint_boundary", "profile",
}  # fmt: skip
# torchtitan 0.2.0 (PyPI) torchtitan/config/job_config.py and its registries.
TORCHTITAN_KEYS: dict[str, set[str]] = {
    "job": {"dump_folder", "description"},
    "model": {"name", "flavor", "hf_assets_path", "converters"},
    "training": {
        "local_batch_size", "global_batch_size", "seq_len", "steps", "mixed_precision_param",
        "mixed_precision_reduce",
    },
    "parallelism": {
        "data_parallel_replicate_degree", "data_parallel_shard_degree",
        "fsdp_reshard_after_forward", "tensor_parallel_degree", "pipeline_parallel_degree",
        "pipeline_parallel_schedule", "pipeline_parallel_microbatch_size",
        "pipeline_parallel_layers_per_stage", "pipeline_parallel_first_stage_less_layers",
        "pipeline_parallel_last_stage_less_layers", "context_parallel_degree",
        "expert_parallel_degree", "expert_tensor_parallel_degree",
    },
    "activation_checkpoint": {"mode", "selective_ac_option"},
    "compile": {"enable", "components"},
    "quantize.linear.float8": {
        "enable_fsdp_float8_all_gather", "precompute_float8_dynamic_scale_for_fsdp",
        "recipe_name", "filter_fqns", "emulate",
    },
    "quantize.linear.mx": {"mxfp8_dim1_cast_kernel_choice", "recipe_name", "filter_fqns"},
    "quantize.grouped_mm.float8": {"fqns"},
    "quantize.grouped_mm.mx": {"recipe_name", "fqns"},
}  # fmt: skip
TORCHTITAN_CONVERTERS = {
    "quantize.linear.float8", "quantize.grouped_mm.float8", "quantize.linear.mx",
    "quantize.grouped_mm.mx",
}  # fmt: skip
TORCHTITAN_MODELS = {"deepseek_v3", "llama3", "llama3_ft", "llama4", "qwen3"}
# Megatron-Bridge ConfigContainer sections and the fields this exporter writes in them.
BRIDGE_KEYS: dict[str, set[str]] = {
    "model": {
        "tensor_model_parallel_size", "pipeline_model_parallel_size",
        "virtual_pipeline_model_parallel_size", "context_parallel_size", "sequence_parallel",
        "seq_length", "expert_model_parallel_size", "expert_tensor_parallel_size",
        "recompute_granularity", "recompute_method", "recompute_num_layers", "recompute_modules",
    },
    "train": {"micro_batch_size", "global_batch_size", "train_iters"},
    "dataset": {"seq_length"},
    "optimizer": {"use_distributed_optimizer"},
    "ddp": {
        "use_distributed_optimizer", "overlap_grad_reduce", "overlap_param_gather",
        "grad_reduce_in_fp32", "use_megatron_fsdp", "data_parallel_sharding_strategy",
    },
    "dist": {"use_megatron_fsdp"},
    "checkpoint": {"ckpt_format"},
    "env_vars": {"CUDA_DEVICE_MAX_CONNECTIONS"},
}  # fmt: skip
BRIDGE_MIXED_PRECISION = {
    "bf16_mixed", "fp16_mixed", "bf16_with_fp8_current_scaling_mixed",
    "fp16_with_fp8_current_scaling_mixed", "bf16_with_mxfp8_mixed", "bf16_with_nvfp4_mixed",
}  # fmt: skip
FSDP_STRATEGY = {"zero2": "optim_grads", "zero3": "optim_grads_params"}


@dataclass(frozen=True)
class Case:
    model: str
    gpu: str
    num_gpus: int
    seq_len: int
    gbs: int
    knobs: dict[str, Any]

    def build(self) -> tuple[TrainingJobSpec, TrainingConfig]:
        raw = {
            "model": self.model,
            "cluster": {"gpu": self.gpu, "num_gpus": self.num_gpus},
            "workload": {"seq_len": self.seq_len, "global_batch_size": self.gbs},
        }
        spec = parse_job_spec(raw)
        assert isinstance(spec, TrainingJobSpec)
        return spec, TrainingConfig.model_validate(self.knobs)


H100, B200 = "h100-sxm-80gb", "b200-180gb"
CASES = {
    "dense-gqa": Case("llama-3.1-70b", H100, 64, 8192, 512, {"tp": 8, "pp": 2}),
    "moe-ep-zero2": Case(
        "mixtral-8x7b", H100, 32, 4096, 256, {"tp": 2, "ep": 8, "sharding": "zero2"}
    ),
    "mla-zero3-full": Case(
        "deepseek-v3", H100, 256, 4096, 1024,
        {"tp": 8, "ep": 32, "sharding": "zero3", "recompute": "full"},
    ),
    "fp8": Case("llama-3.1-8b", H100, 8, 8192, 64, {"dtype": "fp8", "recompute": "none"}),
    "vpp-full": Case(
        "llama-3.1-70b", H100, 128, 8192, 1024,
        {"tp": 8, "pp": 4, "vpp": 2, "recompute": "full"},
    ),
    "cp": Case("llama-3.1-8b", H100, 32, 131072, 32, {"tp": 2, "cp": 4}),
    "moe-blackwell-fp8": Case(
        "qwen3-30b-a3b", B200, 16, 4096, 128, {"ep": 8, "dtype": "fp8", "sharding": "zero2"}
    ),
    "fp4-zero2-pp": Case(
        "llama-3.1-70b", B200, 64, 8192, 256,
        {"tp": 4, "pp": 4, "dtype": "fp4", "sharding": "zero2"},
    ),
    "gelu-ddp": Case(
        "gpt3-175b", "a100-80gb", 128, 2048, 256,
        {"tp": 8, "pp": 8, "sharding": "none", "recompute": "full"},
    ),
    "volta": Case("llama-2-7b", "v100-32gb", 8, 4096, 64, {"micro_batch_size": 2}),
}  # fmt: skip


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[TrainingJobSpec, TrainingConfig]:
    return CASES[request.param].build()


def render(fmt: str, spec: TrainingJobSpec, config: TrainingConfig) -> str:
    return TRAINING_EXPORTERS[fmt][1](spec, config, {"tokens_per_s_per_gpu": 3210.5})


def dp_of(spec: TrainingJobSpec, config: TrainingConfig) -> int:
    return config.dp(spec.cluster.num_gpus)


def accumulation(spec: TrainingJobSpec, config: TrainingConfig) -> int:
    return spec.workload.global_batch_size // (config.micro_batch_size * dp_of(spec, config))


def flag_map(tokens: list[str]) -> dict[str, list[str]]:
    """--flag value... groups; a repeated flag is an error (the last would silently win)."""
    out: dict[str, list[str]] = {}
    for tok in tokens:
        if tok.startswith("--"):
            assert tok not in out, f"{tok} given twice"
            out[tok] = []
            last = tok
        else:
            out[last].append(tok)
    return out


def megatron_command(text: str) -> tuple[dict[str, list[str]], list[str]]:
    """(pretrain_gpt.py flags, torchrun tokens) of the script, parsed as bash would split it."""
    joined = text.replace("\\\n", " ")
    lines = [ln for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]
    command = next(shlex.split(ln) for ln in lines if ln.startswith("torchrun"))
    cut = command.index("pretrain_gpt.py")
    return flag_map(command[cut + 1 :]), command[:cut]


def one(flags: dict[str, list[str]], name: str) -> str:
    assert len(flags[name]) == 1, name
    return flags[name][0]


def test_cases_are_valid_points(case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    assert build_training_space(spec).violations(config) == []


def test_training_kind_registers_every_format() -> None:
    exporters = job_kind("training").exporters
    assert set(exporters) == {"json", "yaml", "megatron", "deepspeed", "torchtitan", "nemo"}
    assert exporters == TRAINING_EXPORTERS
    spec, config = CASES["fp8"].build()
    with pytest.raises(ValueError, match="torchtitan"):
        export("vllm", spec, config.model_dump(), {})


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_plain_formats_round_trip(fmt: str, case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    text = render(fmt, spec, config)
    doc = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert TrainingConfig.model_validate({k: v for k, v in doc["config"].items() if k != "dp"}) == (
        config
    )
    assert doc["config"]["dp"] == dp_of(spec, config)
    assert doc["derived"]["micro_batches_per_step"] == accumulation(spec, config)
    assert doc["workload"] == {
        "seq_len": spec.workload.seq_len,
        "global_batch_size": spec.workload.global_batch_size,
    }
    assert doc["predicted"] == {"tokens_per_s_per_gpu": 3210.5}


def test_megatron_script(case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    text = render("megatron", spec, config)
    flags, launcher = megatron_command(text)
    assert set(flags) <= MEGATRON_FLAGS, set(flags) - MEGATRON_FLAGS
    for name, choices in MEGATRON_CHOICES.items():
        assert name not in flags or one(flags, name) in choices, name
    assert text.count("--tensor-model-parallel-size") == 1
    assert f"--nproc-per-node={spec.cluster.gpus_per_node}" in launcher
    nnodes = int(next(t for t in launcher if t.startswith("--nnodes=")).split("=")[1])
    assert nnodes * spec.cluster.gpus_per_node == spec.cluster.num_gpus
    expected = {
        "--tensor-model-parallel-size": config.tp,
        "--pipeline-model-parallel-size": config.pp,
        "--context-parallel-size": config.cp,
        "--micro-batch-size": config.micro_batch_size,
        "--global-batch-size": spec.workload.global_batch_size,
        "--seq-length": spec.workload.seq_len,
        "--num-layers": spec.model.num_layers,
        "--hidden-size": spec.model.hidden_size,
        "--num-attention-heads": spec.model.num_attention_heads,
    }
    assert {k: int(one(flags, k)) for k in expected} == expected
    vpp = flags.get("--num-virtual-stages-per-pipeline-rank")
    assert vpp == ([str(config.vpp)] if config.vpp > 1 else None)
    assert ("--sequence-parallel" in flags) == (config.sequence_parallel and config.tp > 1)
    check_megatron_sharding(flags, config, text)
    check_megatron_recompute_precision(flags, spec, config)
    check_megatron_architecture(flags, spec, config)


def check_megatron_sharding(flags: dict[str, list[str]], config: TrainingConfig, text: str) -> None:
    assert ("--use-distributed-optimizer" in flags) == (config.sharding != "none")
    if config.sharding in FSDP_STRATEGY:
        assert one(flags, "--data-parallel-sharding-strategy") == FSDP_STRATEGY[config.sharding]
        assert "--use-megatron-fsdp" in flags and one(flags, "--ckpt-format") == "fsdp_dtensor"
        assert "unset CUDA_DEVICE_MAX_CONNECTIONS" in text
    else:
        assert "--use-megatron-fsdp" not in flags
        wanted = config.tp > 1 or config.cp > 1
        assert ("export CUDA_DEVICE_MAX_CONNECTIONS=1" in text) == wanted
    if config.sharding == "zero2" and config.pp > 1:
        assert "# note: the Megatron-FSDP guide does not cover pipeline parallelism" in text


def check_megatron_recompute_precision(
    flags: dict[str, list[str]], spec: TrainingJobSpec, config: TrainingConfig
) -> None:
    granularity = flags.get("--recompute-granularity")
    assert granularity == (None if config.recompute == "none" else [config.recompute])
    if config.recompute == "full":
        assert one(flags, "--recompute-method") == "uniform"
        assert one(flags, "--recompute-num-layers") == "1"
    volta = spec.cluster.gpu.generation == "volta"
    assert ("--fp16" in flags, "--bf16" in flags) == (volta, not volta)
    blackwell = spec.cluster.gpu.generation.startswith("blackwell")
    fp8 = flags.get("--fp8-format"), flags.get("--fp8-recipe")
    if config.dtype.value == "fp8":
        assert fp8 == ((["e4m3"], ["mxfp8"]) if blackwell else (["hybrid"], ["tensorwise"]))
    else:
        assert fp8 == (None, None)
    assert ("--fp4-format" in flags) == (config.dtype.value == "fp4")


def check_megatron_architecture(
    flags: dict[str, list[str]], spec: TrainingJobSpec, config: TrainingConfig
) -> None:
    m = spec.model
    gqa = m.attention != "mla" and m.num_kv_heads < m.num_attention_heads
    assert flags.get("--num-query-groups") == ([str(m.num_kv_heads)] if gqa else None)
    assert ("--untie-embeddings-and-output-weights" in flags) == (not m.tie_word_embeddings)
    assert ("--swiglu" in flags) == (m.ffn_activation == "swiglu")
    if m.attention == "mla":
        mla = {
            "--kv-lora-rank": m.kv_lora_rank,
            "--q-lora-rank": m.q_lora_rank,
            "--qk-head-dim": m.qk_nope_head_dim,
            "--qk-pos-emb-head-dim": m.qk_rope_head_dim,
            "--v-head-dim": m.v_head_dim,
        }
        assert {k: int(one(flags, k)) for k in mla} == mla
        assert "--multi-latent-attention" in flags and "--kv-channels" not in flags
    if not m.is_moe:
        assert not any(f.startswith(("--moe", "--num-experts", "--expert")) for f in flags)
        return
    assert int(one(flags, "--num-experts")) == m.num_experts
    assert int(one(flags, "--moe-router-topk")) == m.experts_per_token
    assert int(one(flags, "--moe-ffn-hidden-size")) == m.moe_ffn_hidden_size
    assert int(one(flags, "--expert-model-parallel-size")) == config.ep
    if m.num_shared_experts:
        assert m.moe_ffn_hidden_size is not None
        shared = int(one(flags, "--moe-shared-expert-intermediate-size"))
        assert shared == m.num_shared_experts * m.moe_ffn_hidden_size
    if "--moe-layer-freq" in flags:
        pattern = expand_pattern(one(flags, "--moe-layer-freq"))
        assert len(pattern) == m.num_layers and sum(pattern) == m.num_moe_layers
        assert pattern[: m.num_dense_layers] == [0] * m.num_dense_layers


def expand_pattern(expression: str) -> list[int]:
    """Expand Megatron's ``([0]*3+[1]*58)`` list expression without eval."""
    assert re.fullmatch(r"\((\[[01]\]\*\d+\+?)+\)", expression), expression
    out: list[int] = []
    for bit, count in re.findall(r"\[([01])\]\*(\d+)", expression):
        out += [int(bit)] * int(count)
    return out


def test_deepspeed_config(case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    ds = json.loads(render("deepspeed", spec, config))
    extra = ds.pop("paretune")
    assert set(ds) <= DS_TOP_KEYS, set(ds) - DS_TOP_KEYS
    assert set(ds["zero_optimization"]) <= DS_ZERO_KEYS
    assert ds["train_batch_size"] == spec.workload.global_batch_size
    assert ds["train_micro_batch_size_per_gpu"] == config.micro_batch_size
    assert ds["gradient_accumulation_steps"] == accumulation(spec, config)
    micro_times_acc = ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"]
    assert ds["train_batch_size"] == micro_times_acc * dp_of(spec, config)
    stage = ds["zero_optimization"]["stage"]
    want = {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3}[config.sharding]
    if config.pp > 1:
        want = min(want, 1)  # DeepSpeed's pipeline engine rejects ZeRO-2/3
    if spec.model.is_moe:
        want = min(want, 2)  # native DeepSpeed MoE rejects ZeRO-3
    assert stage == want
    if stage != {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3}[config.sharding]:
        assert any("stage" in note for note in extra["notes"])
    half = "fp16" if spec.cluster.gpu.generation == "volta" else "bf16"
    assert ds[half] == {"enabled": True}
    assert ("activation_checkpointing" in ds) == (config.recompute == "full")
    if "activation_checkpointing" in ds:
        assert set(ds["activation_checkpointing"]) <= DS_ACT_KEYS
    check_megatron_deepspeed_args(flag_map(extra["megatron_deepspeed_args"]), spec, config, stage)
    check_deepspeed_notes(" | ".join(extra["notes"]), spec, config)


def check_megatron_deepspeed_args(
    flags: dict[str, list[str]], spec: TrainingJobSpec, config: TrainingConfig, stage: int
) -> None:
    assert set(flags) <= MEGATRON_DEEPSPEED_FLAGS, set(flags) - MEGATRON_DEEPSPEED_FLAGS
    assert one(flags, "--deepspeed_config") == "ds_config.json"
    assert int(one(flags, "--zero-stage")) == stage
    assert int(one(flags, "--tensor-model-parallel-size")) == config.tp
    if config.pp > 1:
        assert int(one(flags, "--pipeline-model-parallel-size")) == config.pp
    else:
        assert "--no-pipeline-parallel" in flags
    assert flags.get("--ds-sequence-parallel-size") == ([str(config.cp)] if config.cp > 1 else None)
    assert int(one(flags, "--num-key-value-heads")) == spec.model.num_kv_heads
    assert int(one(flags, "--global-batch-size")) == spec.workload.global_batch_size
    assert int(one(flags, "--micro-batch-size")) == config.micro_batch_size
    if spec.model.is_moe:
        assert int(one(flags, "--moe-expert-parallel-size")) == config.ep
    if config.recompute == "full":
        assert "--deepspeed-activation-checkpointing" in flags
    if "--normalization" in flags:
        assert one(flags, "--normalization") in {"layernorm", "rmsnorm"}


def check_deepspeed_notes(notes: str, spec: TrainingJobSpec, config: TrainingConfig) -> None:
    """Whatever DeepSpeed cannot express is said, not dropped."""
    assert ("interleaved" in notes) == (config.vpp > 1)
    assert ("Ulysses" in notes) == (config.cp > 1)
    assert ("multi-latent" in notes) == (spec.model.attention == "mla")
    assert ("fp4" in notes) == (config.dtype.value == "fp4")


def flat_tables(doc: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """TOML tables by dotted name ([quantize.linear.float8] nests three levels deep)."""
    tables: dict[str, dict[str, Any]] = {}
    leaves = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    if prefix:
        tables[prefix] = leaves
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.update(flat_tables(value, f"{prefix}.{key}" if prefix else key))
    return {name: t for name, t in tables.items() if t}


def test_torchtitan_toml(case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    text = render("torchtitan", spec, config)
    tables = flat_tables(tomllib.loads(text))
    for name, table in tables.items():
        assert set(table) <= TORCHTITAN_KEYS[name], (name, set(table) - TORCHTITAN_KEYS[name])
    training, par = tables["training"], tables["parallelism"]
    gbs, dp = spec.workload.global_batch_size, dp_of(spec, config)
    assert training["global_batch_size"] == gbs and training["seq_len"] == spec.workload.seq_len
    assert (par["tensor_parallel_degree"], par["pipeline_parallel_degree"]) == (
        config.tp,
        config.pp,
    )
    assert par["context_parallel_degree"] == config.cp
    assert par["data_parallel_shard_degree"] * par["data_parallel_replicate_degree"] == dp
    local = training["local_batch_size"]
    pipeline_micro = local // par.get("pipeline_parallel_microbatch_size", local)
    assert pipeline_micro * gbs // (local * dp) == accumulation(spec, config)
    if config.pp > 1:
        assert par["pipeline_parallel_microbatch_size"] == config.micro_batch_size
        stages = par["pipeline_parallel_layers_per_stage"] * config.pp * config.vpp
        assert stages == spec.model.num_layers
        schedule = "Interleaved1F1B" if config.vpp > 1 else "1F1B"
        assert par["pipeline_parallel_schedule"] == schedule
    else:
        assert local == config.micro_batch_size
    if config.sharding == "zero3":
        assert par["data_parallel_shard_degree"] == dp
        assert par["fsdp_reshard_after_forward"] == "default"
    if spec.model.is_moe and config.ep > 1:
        assert par["expert_parallel_degree"] == config.ep
        assert par["expert_tensor_parallel_degree"] == config.tp
    assert tables["activation_checkpoint"]["mode"] == config.recompute
    check_torchtitan_model_and_precision(tables, text, spec, config)


def check_torchtitan_model_and_precision(
    tables: dict[str, dict[str, Any]], text: str, spec: TrainingJobSpec, config: TrainingConfig
) -> None:
    model = tables["model"]
    known = {
        "llama-3.1-70b": ("llama3", "70B"),
        "llama-3.1-8b": ("llama3", "8B"),
        "deepseek-v3": ("deepseek_v3", "671B"),
        "qwen3-30b-a3b": ("qwen3", "30B-A3B"),
    }
    if spec.model.name in known:
        assert (model["name"], model["flavor"]) == known[spec.model.name]
        assert model["name"] in TORCHTITAN_MODELS
    else:
        assert f"ships no flavor for {spec.model.name}" in text
    converters = model.get("converters", [])
    assert set(converters) <= TORCHTITAN_CONVERTERS
    if config.dtype.value != "fp8":
        assert not converters
        assert ("no fp4 training" in text) == (config.dtype.value == "fp4")
        return
    kind = "mx" if spec.cluster.gpu.generation.startswith("blackwell") else "float8"
    assert f"quantize.linear.{kind}" in converters and f"quantize.linear.{kind}" in tables
    assert (f"quantize.grouped_mm.{kind}" in converters) == spec.model.is_moe


def test_nemo_override(case: tuple[TrainingJobSpec, TrainingConfig]) -> None:
    spec, config = case
    text = render("nemo", spec, config)
    doc = yaml.safe_load(text)
    assert set(doc) <= set(BRIDGE_KEYS) | {"mixed_precision"}
    for section, fields in BRIDGE_KEYS.items():
        assert set(doc.get(section, {})) <= fields, (section, set(doc[section]) - fields)
    model = doc["model"]
    assert model["tensor_model_parallel_size"] == config.tp
    assert model["pipeline_model_parallel_size"] == config.pp
    assert model["context_parallel_size"] == config.cp
    assert model["virtual_pipeline_model_parallel_size"] == (config.vpp if config.vpp > 1 else None)
    assert model["sequence_parallel"] == (config.sequence_parallel and config.tp > 1)
    assert model["seq_length"] == doc["dataset"]["seq_length"] == spec.workload.seq_len
    assert model.get("expert_model_parallel_size") == (config.ep if spec.model.is_moe else None)
    assert model["recompute_granularity"] == (
        None if config.recompute == "none" else config.recompute
    )
    train = doc["train"]
    assert (train["micro_batch_size"], train["global_batch_size"]) == (
        config.micro_batch_size,
        spec.workload.global_batch_size,
    )
    distopt = config.sharding != "none"
    assert doc["optimizer"]["use_distributed_optimizer"] is distopt
    assert doc["ddp"]["use_distributed_optimizer"] is distopt
    strategy = doc["ddp"].get("data_parallel_sharding_strategy")
    assert strategy == FSDP_STRATEGY.get(config.sharding)
    assert doc.get("dist", {}).get("use_megatron_fsdp", False) == (strategy is not None)
    assert doc["mixed_precision"] in BRIDGE_MIXED_PRECISION
    assert ("fp8" in doc["mixed_precision"]) == (config.dtype.value == "fp8")
    assert ("nvfp4" in doc["mixed_precision"]) == (config.dtype.value == "fp4")
    check_nemo2_comment(text, spec, config)


def check_nemo2_comment(text: str, spec: TrainingJobSpec, config: TrainingConfig) -> None:
    """The NeMo 2.0 equivalent overrides, parsed from their comment line."""
    line = next(ln for ln in text.splitlines() if "NeMo 2.0 equivalent:" in ln)
    pairs = dict(tok.split("=", 1) for tok in shlex.split(line.split("equivalent:", 1)[1]))
    assert pairs["trainer.strategy.tensor_model_parallel_size"] == str(config.tp)
    assert pairs["trainer.strategy.pipeline_model_parallel_size"] == str(config.pp)
    assert pairs["trainer.strategy.context_parallel_size"] == str(config.cp)
    assert pairs["data.micro_batch_size"] == str(config.micro_batch_size)
    assert pairs["data.global_batch_size"] == str(spec.workload.global_batch_size)
    assert pairs["data.seq_length"] == str(spec.workload.seq_len)
