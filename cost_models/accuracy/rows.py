"""Rows of ``training_measured.csv`` as specs the training model takes, or why they cannot be.

A row is expressible when its architecture, workload, hardware and parallel layout are
published (or follow from a stated convention) and it has a throughput to compare with. Each
assumption made on the way is recorded on the row; each row left out is listed with its reason
(``InexpressibleRow``), never dropped silently.

Ground truth is tokens/s per GPU, in this order: ``tokens_per_sec_per_gpu``;
``iteration_time_s`` (tokens per step / time / GPUs); ``tokens_per_sec_total`` / GPUs; else the
source's TFLOP/s divided by the FLOPs per token *of that source's own published formula*
(README trap 1), which recovers the tokens/s the source measured. Those rows are flagged
``derived_from_tflops`` and reported apart; TFLOP/s are never compared across sources.

Conventions applied where a field is blank (each recorded as an assumption):

- ``ffn_hidden_size``: 4h for GPT-style models (GPT-2/3, Megatron's GPT tables).
- ``vocab_size``: the published tokenizer size of the model family (``FAMILY_VOCAB``).
- ``micro_batch_size``: Megatron-LM 2020 had no gradient accumulation, so it is the global batch
  over dp; elsewhere, with pp = 1 it only sets GEMM shapes and is taken as 1; with pp > 1 the
  bubble depends on it and the row is left out.
- Framework era: Megatron-LM before Megatron-Core (2020-2022 papers) and DeepSpeed 2021 ran
  unfused attention and did not overlap TP communication with GEMMs. Their published TFLOP/s
  count the recompute forward (SC'21 eq. 3), so recompute is full where the row leaves it
  blank.
- Sharding: Megatron-Core stacks use the distributed optimizer (zero1), Megatron-FSDP and
  PyTorch FSDP FULL_SHARD and ZeRO-3 are zero3, legacy Megatron-LM is plain DDP (none).
- DeepSpeed (ZeRO-3, 2021) runs as ``DEEPSPEED_2021``: the legacy kernels plus the way its
  ZeRO-3 moved parameters (``plan.Framework``); the knobs of its rows are as published.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from cost_models.flops import forward_flops_per_token
from cost_models.plan import MODERN
from cost_models.plan import Framework
from search_spaces.catalog import load_gpu
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

GPU_TYPES: dict[str, str] = {
    "a100_40gb": "a100-40gb",
    "A100 (DGX-A100)": "a100-40gb",
    "a100_80gb": "a100-80gb",
    "A100 80GB": "a100-80gb",
    "A100 80GB (Selene)": "a100-80gb",
    "A100 80GB (Selene, DGX A100)": "a100-80gb",
    "H100": "h100-sxm-80gb",
    "H100 SXM 80GB (DGX-H100)": "h100-sxm-80gb",
    "H100 (80GB SXM, Eos)": "h100-sxm-80gb",
    "B200 (DGX-B200)": "b200-180gb",
    "B300 (DGX-B300)": "b300-288gb",
    "GB200 (NVL72 rack)": "gb200-nvl72",
    "GB300 (NVL72 rack)": "gb300-nvl72",
    "V100 32GB (DGX-2)": "v100-32gb",
}
# Published tokenizer sizes for families whose rows leave vocab_size blank; both agree with
# the rows' own TFLOP/s / tokens/s under the NeMo formula within its rounding (±2%).
FAMILY_VOCAB = {"GPT3-": 51200, "Nemotron": 256000}  # GPT-2 BPE padded; Nemotron SentencePiece
LEGACY_FRAMEWORKS = ("Megatron-LM", "DeepSpeed")  # not "Megatron-Core"
LEGACY = Framework(flash_attention=False, overlap_tp_comm=False)
# DeepSpeed's ZeRO-3 of 2021 (SC'21 Table 2): legacy kernels, and its own way of moving the
# parameters (see ``Framework``).
DEEPSPEED_2021 = Framework(
    flash_attention=False,
    overlap_tp_comm=False,
    fsdp_multi_rail=False,
    fsdp_regather_for_recompute=True,
    fsdp_prefetch_per_module=True,
)
# An unpublished micro-batch size is guessed (as 1) only where any size up to 4 would leave
# the pipeline bubble below 5% of the step.
MAX_GUESSED_MICRO_BATCH = 4
MAX_GUESSED_BUBBLE = 0.05
GATED_FAMILIES = ("llama", "qwen", "mixtral", "deepseek")
TIED_FAMILIES = ("mpt-",)  # MPT ties the LM head to the input embedding


@dataclass(frozen=True)
class ReferenceRow:
    """One published run as specs, with its measured tokens/s per GPU."""

    row_id: str
    source_group: str
    model_name: str
    gpu_type: str
    model: ModelSpec
    cluster: ClusterSpec
    workload: TrainingWorkload
    config: TrainingConfig
    framework: Framework
    measured_tokens_per_s_per_gpu: float
    derived_from_tflops: bool = False
    assumptions: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class InexpressibleRow:
    row_id: str
    source_group: str
    model_name: str
    reason: str


class Inexpressible(ValueError):
    """Raised while converting a row the model cannot express; the message is the reason."""


def _int(row: dict[str, str], key: str, default: int = 0) -> int:
    value = row.get(key, "").strip()
    return int(float(value)) if value else default


def _framework(row: dict[str, str]) -> Framework:
    if row["framework"].startswith("DeepSpeed"):
        return DEEPSPEED_2021
    return LEGACY if row["framework"].startswith(LEGACY_FRAMEWORKS) else MODERN


def _vocab(row: dict[str, str], notes: list[str]) -> int:
    if row["vocab_size"].strip():
        return _int(row, "vocab_size")
    for prefix, vocab in FAMILY_VOCAB.items():
        if row["model"].startswith(prefix):
            notes.append(f"vocab_size={vocab} (published tokenizer of the family)")
            return vocab
    raise Inexpressible("vocab_size not published")


def _model(row: dict[str, str], notes: list[str]) -> ModelSpec:
    name = row["model"].lower()
    moe = row["arch_type"] == "moe"
    if not row["ffn_hidden_size"].strip():
        notes.append("ffn_hidden_size = 4h (GPT convention)")
    return ModelSpec(
        name=row["model"],
        num_layers=_int(row, "n_layers"),
        hidden_size=_int(row, "hidden_size"),
        num_attention_heads=_int(row, "n_heads"),
        num_kv_heads=_int(row, "n_kv_heads"),
        head_dim=_int(row, "head_dim"),
        ffn_hidden_size=_int(row, "ffn_hidden_size"),
        ffn_activation="swiglu" if any(k in name for k in GATED_FAMILIES) else "gelu",
        vocab_size=_vocab(row, notes),
        tie_word_embeddings=name.startswith(TIED_FAMILIES),
        num_experts=_int(row, "num_experts") if moe else 0,
        experts_per_token=_int(row, "moe_topk") if moe else 0,
        moe_ffn_hidden_size=(_int(row, "moe_ffn_hidden_size") or None) if moe else None,
        num_shared_experts=_int(row, "n_shared_experts"),
        num_dense_layers=_int(row, "n_dense_layers"),
    )


def _dtype(precision: str) -> str:
    p = precision.lower()
    if "fp4" in p:
        return "fp4"
    if "fp8" in p:
        return "fp8"
    return "fp16" if "fp16" in p else "bf16"


def _sharding(row: dict[str, str], replicas: int, framework: Framework) -> str:
    text = row["sharding"].lower()
    if replicas == 1:
        return "none"
    if ("fsdp" in text and "fsdp=0" not in text) or "zero-3" in text:
        return "zero3"
    return "zero1" if framework is MODERN else "none"


def _recompute(row: dict[str, str], framework: Framework, notes: list[str]) -> str:
    t = row["activation_recompute"].strip().lower()
    if not t and framework is not MODERN:
        notes.append("recompute = full (the source's TFLOP/s formula counts it)")
        return "full"
    return "full" if t.startswith("full") else "selective" if t.startswith("selective") else "none"


def _micro_batch(row: dict[str, str], dp: int, notes: list[str]) -> int:
    if row["micro_batch_size"].strip():
        return _int(row, "micro_batch_size")
    if row["framework"] == "Megatron-LM (2020)":
        notes.append("micro_batch_size = global batch / dp (no gradient accumulation in 2020)")
        return _int(row, "global_batch_seqs") // dp
    pp = _int(row, "pp", 1)
    if pp == 1:
        notes.append("micro_batch_size = 1 (not published; with pp = 1 it only sets GEMM shapes)")
        return 1
    per_pipeline = _int(row, "global_batch_seqs") // dp
    if (pp - 1) / max(1, per_pipeline // MAX_GUESSED_MICRO_BATCH) <= MAX_GUESSED_BUBBLE:
        notes.append("micro_batch_size = 1 (not published; the bubble stays small for 1-4)")
        return 1
    raise Inexpressible("micro-batch size not published and pp > 1: the bubble depends on it")


def _config(row: dict[str, str], framework: Framework, notes: list[str]) -> TrainingConfig:
    tp, cp, dp = _int(row, "tp", 1), _int(row, "cp", 1), _int(row, "dp", 1)
    sp = row["sequence_parallel"].strip().lower()
    if _int(row, "pp", 1) > 1 and not row["vpp"].strip() and framework is not MODERN:
        notes.append("vpp = 1 (schedule not published)")
    return TrainingConfig(
        tp=tp,
        pp=_int(row, "pp", 1),
        cp=cp,
        ep=_int(row, "ep", 1) if row["arch_type"] == "moe" else 1,
        vpp=_int(row, "vpp", 1),
        micro_batch_size=_micro_batch(row, dp, notes),
        sharding=_sharding(row, dp * cp, framework),
        recompute=_recompute(row, framework, notes),
        sequence_parallel=(sp == "yes") if sp in ("yes", "no") else tp > 1,
        dtype=_dtype(row["precision"]),
    )


def _sc21_flops_per_token(model: ModelSpec, seq_len: int) -> float:
    """Narayanan et al. SC'21 eq. 3 per token, recompute forward included."""
    h, layers, v = model.hidden_size, model.num_layers, model.vocab_size
    return 96.0 * layers * h * h * (1 + seq_len / (6 * h) + v / (16 * layers * h))


def _megatron_2024_flops_per_token(model: ModelSpec, seq_len: int) -> float:
    """Megatron-LM/NeMo formula before Mar 2025: README formula 1, attention not halved."""
    return 3.0 * forward_flops_per_token(model, seq_len, causal=False).total


# Sources that publish only TFLOP/s, and the FLOPs-per-token formula each one used.
TFLOPS_FORMULAS: dict[str, Callable[[ModelSpec, int], float]] = {
    "megatron_sc21_table1": _sc21_flops_per_token,
    "megatron_sc21_table2": _sc21_flops_per_token,
    "nvidia_megatron-lm_weak_scaling_h100": _megatron_2024_flops_per_token,
    "nvidia_nemo_long_sequence": _megatron_2024_flops_per_token,
}


def _measured(row: dict[str, str], model: ModelSpec) -> tuple[float, bool]:
    """Tokens/s per GPU and whether it was derived from the source's TFLOP/s."""
    gpus, seq = _int(row, "num_gpus"), _int(row, "seq_len")
    if row["tokens_per_sec_per_gpu"].strip():
        return float(row["tokens_per_sec_per_gpu"]), False
    if row["iteration_time_s"].strip():
        tokens = _int(row, "global_batch_seqs") * seq
        return tokens / float(row["iteration_time_s"]) / gpus, False
    if row["tokens_per_sec_total"].strip():
        return float(row["tokens_per_sec_total"]) / gpus, False
    formula = TFLOPS_FORMULAS.get(row["source_group"])
    if formula and row["tflops_per_gpu"].strip():
        return float(row["tflops_per_gpu"]) * 1e12 / formula(model, seq), True
    raise Inexpressible(
        "no throughput published (tokens/s, step time, or TFLOP/s of a known formula)"
    )


def _check_layout(row: dict[str, str]) -> None:
    if row["workload"] != "pretrain":
        raise Inexpressible(
            f"{row['workload']} workload: packed sequences / frozen weights are not modelled"
        )
    if row["gpu_type"] not in GPU_TYPES:
        raise Inexpressible(f"gpu_type {row['gpu_type']!r} has no catalog entry")
    missing = [k for k in ("tp", "pp", "dp", "global_batch_seqs") if not row[k].strip()]
    if missing:
        raise Inexpressible(f"not published: {', '.join(missing)}")
    sizes = [_int(row, k, 1) for k in ("tp", "pp", "dp", "cp")]
    product = sizes[0] * sizes[1] * sizes[2] * sizes[3]
    if product != _int(row, "num_gpus"):
        raise Inexpressible(
            f"tp*pp*dp*cp = {product} but num_gpus = {row['num_gpus']}: a parallel size is "
            "mis-transcribed or unpublished"
        )


def convert(row: dict[str, str]) -> ReferenceRow:
    """The row as specs; raises ``Inexpressible`` with the reason when it cannot be."""
    _check_layout(row)
    notes: list[str] = []
    model = _model(row, notes)
    framework = _framework(row)
    config = _config(row, framework, notes)
    measured, derived = _measured(row, model)
    gpu = load_gpu(GPU_TYPES[row["gpu_type"]])
    cluster = ClusterSpec(
        gpu=gpu,
        num_gpus=_int(row, "num_gpus"),
        gpus_per_node=_int(row, "gpus_per_node") or gpu.gpus_per_node,
    )
    workload = TrainingWorkload(
        seq_len=_int(row, "seq_len"), global_batch_size=_int(row, "global_batch_seqs")
    )
    return ReferenceRow(
        row_id=row["row_id"],
        source_group=row["source_group"],
        model_name=row["model"],
        gpu_type=row["gpu_type"],
        model=model,
        cluster=cluster,
        workload=workload,
        config=config,
        framework=framework,
        measured_tokens_per_s_per_gpu=measured,
        derived_from_tflops=derived,
        assumptions=tuple(notes),
    )


def load_reference(reference_dir: Path) -> tuple[list[ReferenceRow], list[InexpressibleRow]]:
    """Every row of ``training_measured.csv``: expressed, or listed with its reason."""
    rows: list[ReferenceRow] = []
    left_out: list[InexpressibleRow] = []
    with (reference_dir / "training_measured.csv").open() as fh:
        for raw in csv.DictReader(fh):
            try:
                rows.append(convert(raw))
            except (Inexpressible, ValueError) as exc:
                reason = str(exc).splitlines()[0]
                left_out.append(
                    InexpressibleRow(raw["row_id"], raw["source_group"], raw["model"], reason)
                )
    return rows, left_out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
