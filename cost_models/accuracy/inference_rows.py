"""The published serving measurements as cases the serving model can evaluate.

``inference_latency_measured.csv`` (AIConfigurator's silicon sample): TTFT and TPOT of one
deployment at a client concurrency, aggregated or disaggregated. Its ``batch_size`` is the
concurrency per attention-DP rank of one worker (``silicon_concurrency`` = batch_size *
attention_dp on the rows that publish both), and ``tp_size`` the attention tensor parallelism
with ``moe_ep_size`` the expert parallelism; a worker spans tp*pp*attention_dp GPUs, which maps
one to one onto our knobs. Rows without a precision are bf16 checkpoints; quantized checkpoints
(fp8, fp8 block-scaled, NVFP4) serve with an fp8 KV cache; 4-bit checkpoints on Hopper (gpt-oss's
MXFP4), which has no fp4 tensor cores, run as weight-only 4-bit (our int4).

``inference_measured.csv`` (TensorRT-LLM's performance tables): offline maximum throughput of
one worker; its MoE runs use attention DP and expert parallelism over all the worker's GPUs.

Rows the model cannot express are kept with the reason, so the report counts them instead of
dropping them silently.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cost_models.inference_params import BackendProfile
from cost_models.inference_params import backend_profile
from search_spaces.catalog import load_model
from search_spaces.hf_import import model_from_hf_config
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_space import InferenceSpace
from search_spaces.specs import ClusterSpec
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

LATENCY_FILE = "inference_latency_measured.csv"
THROUGHPUT_FILE = "inference_measured.csv"

SYSTEMS = {
    "h100_sxm": "h100-sxm-80gb",
    "h200_sxm": "h200-141gb",
    "b200_sxm": "b200-180gb",
    "b300_sxm": "b300-288gb",
    "gb200": "gb200-nvl72",
    "gb300": "gb300-nvl72",
}
MODELS: dict[str, str] = {  # model_path / table model -> catalog id or hf_configs file
    "deepseek-ai/DeepSeek-V3": "deepseek-v3",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
    "Qwen/Qwen3-32B": "qwen3-32b",
    "nvidia/Qwen3-32B-NVFP4": "qwen3-32b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "MiniMaxAI/MiniMax-M2.5": "hf:MiniMaxAI--MiniMax-M2.5_config.json",
    "Llama 3.1 8B": "llama-3.1-8b",
    "Llama 3.3 70B": "llama-3.1-70b",  # the Llama 3.1 70B architecture
    "Llama 3.1 405B": "llama-3.1-405b",
    "Qwen3-30B-A3B": "qwen3-30b-a3b",
    "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "Llama 4 Scout": "hf:meta-llama--Llama-4-Scout-17B-16E-Instruct_config.json",
    "Llama 4 Maverick": "hf:meta-llama--Llama-4-Maverick-17B-128E-Instruct_config.json",
}
TABLE_KV_FRACTION = 0.95
TABLE_GPUS = {"H100 SXM 80GB": "h100-sxm-80gb", "B200 180GB": "b200-180gb"}


@dataclass(frozen=True)
class ReferenceCase:
    """One measured row, ready to estimate (or the reason it cannot be)."""

    row_id: str
    group: str  # "backend system model mode", the unit the report scores
    model_label: str
    model: ModelSpec | None
    cluster: ClusterSpec | None
    workload: InferenceWorkload | None
    config: InferenceConfig | None
    measured: dict[str, float]  # ttft_ms + tpot_ms, or output_tokens_per_s
    problem: str | None = None
    memory_utilization: float | None = None  # the run's KV memory fraction, when published

    @property
    def backend(self) -> str:
        return self.group.split()[0]

    def profile(self) -> BackendProfile:
        """The backend's profile with the run's own memory setting."""
        base = backend_profile(self.backend)
        if self.memory_utilization is None:
            return base
        return base.model_copy(update={"memory_utilization": self.memory_utilization})


@cache
def _model(key: str, reference_dir: Path) -> ModelSpec:
    if key.startswith("hf:"):
        cfg = json.loads((reference_dir / "hf_configs" / key[3:]).read_text())
        return model_from_hf_config(cfg)
    return load_model(key)


def _int(value: str, default: int = 1) -> int:
    return int(float(value)) if value.strip() else default


def _pool(row: dict[str, str], prefix: str) -> dict[str, Any]:
    adp = _int(row[f"{prefix}_attention_dp_size"])
    return {
        "tp": _int(row[f"{prefix}_tp_size"]),
        "pp": _int(row[f"{prefix}_pp_size"]),
        "attention_dp": adp,
        "ep": _int(row[f"{prefix}_moe_ep_size"]),
        "workers": _int(row[f"{prefix}_num_workers"], 0),
    }


def _latency_config(row: dict[str, str], dense: bool) -> tuple[dict[str, Any], int, float]:
    """(config fields, GPUs, concurrency) of one latency row."""
    precision = row["precision"] or "bf16"
    if precision == "fp4" and row["system"] in ("h100_sxm", "h200_sxm"):
        precision = "int4"  # MXFP4 on Hopper: 4-bit weights dequantised into bf16 GEMMs
    fields: dict[str, Any] = {
        "backend": row["backend"],
        "weight_dtype": precision,
        "kv_dtype": "bf16" if precision == "bf16" else "fp8",
    }
    found = re.search(r"silicon_concurrency=(\d+)", row["silicon_data_source"])
    if row["mode"] == "disagg":
        pre, dec = _pool(row, "prefill"), _pool(row, "decode")
        if dense:
            pre.update(ep=1, attention_dp=1)
            dec.update(ep=1, attention_dp=1)
        fields.update(mode="disaggregated", prefill=pre, decode=dec)
        gpus = sum(p["tp"] * p["pp"] * p["attention_dp"] * p["workers"] for p in (pre, dec))
        # rows without a published concurrency: decode_batch_size per rank of every worker
        per_rank = _int(row["decode_batch_size"])
        default = per_rank * dec["attention_dp"] * dec["workers"]
        return fields, gpus, float(found.group(1)) if found else float(default)
    adp = 1 if dense else _int(row["attention_dp_size"])
    shape = {"tp": _int(row["tp_size"]), "pp": _int(row["pp_size"]), "attention_dp": adp}
    fields.update(shape, ep=1 if dense else _int(row["moe_ep_size"]), replicas=1)
    gpus = shape["tp"] * shape["pp"] * adp
    return fields, gpus, float(_int(row["batch_size"]) * adp)


def _case(
    row_id: str, group: str, label: str, measured: dict[str, float], build: Any
) -> ReferenceCase:
    """Build a case with ``build()`` -> (model, cluster, workload, config); a ValueError or a
    broken validity rule becomes the case's problem."""
    try:
        model, cluster, workload, config = build()
        problems = InferenceSpace(model, cluster, workload).violations(config)
    except (ValueError, KeyError) as exc:
        return ReferenceCase(row_id, group, label, None, None, None, None, measured, str(exc))
    problem = "; ".join(problems) if problems else None
    return ReferenceCase(row_id, group, label, model, cluster, workload, config, measured, problem)


def latency_cases(reference_dir: Path) -> list[ReferenceCase]:
    """Every row of the TTFT/TPOT table as a case."""
    with (reference_dir / LATENCY_FILE).open() as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        label = row["model_path"].split("/")[-1]
        group = f"{row['backend']} {row['system']} {label} {row['mode']}"
        measured = {
            "ttft_ms": float(row["silicon_ttft_ms"]),
            "tpot_ms": float(row["silicon_tpot_ms"]),
        }

        def build(row: dict[str, str] = row) -> Any:
            if row["mode"] == "disagg" and not row["prefill_num_workers"].strip():
                raise ValueError("the row does not publish the pools' worker counts")
            model = _model(MODELS[row["model_path"]], reference_dir)
            fields, gpus, concurrency = _latency_config(row, not model.is_moe)
            cluster = ClusterSpec(gpu=SYSTEMS[row["system"]], num_gpus=gpus)
            workload = InferenceWorkload(
                input_len=int(row["isl"]),
                output_len=int(row["osl"]),
                concurrency=max(1, round(concurrency)),
            )
            return model, cluster, workload, InferenceConfig.model_validate(fields)

        out.append(_case(row["id"], group, label, measured, build))
    return out


def throughput_cases(reference_dir: Path) -> list[ReferenceCase]:
    """Every row of the maximum-throughput table as a case (TensorRT-LLM, one worker)."""
    with (reference_dir / THROUGHPUT_FILE).open() as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        gpu = next((v for k, v in TABLE_GPUS.items() if k in row["gpu_type"]), "")
        group = f"trtllm {gpu} {row['model']} max-throughput"
        measured = {"output_tokens_per_s": float(row["output_tokens_per_sec_total"])}

        def build(row: dict[str, str] = row, gpu: str = gpu) -> Any:
            model = _model(MODELS[row["model"]], reference_dir)
            tp, pp = _int(row["tp"]), _int(row["pp"])
            dtype = "fp4" if row["precision"].startswith("FP4") else "fp8"
            shape = {"tp": tp, "attention_dp": 1, "ep": 1}
            if model.is_moe:  # attention DP and expert parallelism over the worker
                shape = {"tp": 1, "attention_dp": tp, "ep": tp}
            config = InferenceConfig(
                backend="trtllm", pp=pp, weight_dtype=dtype, kv_dtype="fp8", **shape
            )
            cluster = ClusterSpec(gpu=gpu, num_gpus=tp * pp)
            workload = InferenceWorkload(input_len=int(row["isl"]), output_len=int(row["osl"]))
            return model, cluster, workload, config

        case = _case(row["row_id"], group, row["model"], measured, build)
        # trtllm-bench gives the KV cache 0.95 of the free memory (the table's own note)
        out.append(dataclasses.replace(case, memory_utilization=TABLE_KV_FRACTION))
    return out
