"""Where the time and the memory of an estimate go, term by term.

``paretune estimate --explain`` prints this so a person can see *why* a configuration is fast
or slow (which kernels, which collectives, which memory term binds) instead of one number. The
step rows are the terms of ``estimate_training`` itself, with the compute term split by op
class, so they add up to its step time; the memory rows add up to its memory per GPU. The
data-parallel traffic section is informational: it shows every DP/ZeRO collective before
overlap, of which only the exposed share is on the step's critical path.

For serving (``explain_inference``), the decode-step terms of the serving model plus the
prefill work interleaved into each output token add up to the TPOT; the prefill terms add up
to one prefill (TTFT adds the queueing and hand-offs listed with it); the memory terms add up
to the memory per GPU.
"""

from __future__ import annotations

from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.compute import attention_gemm_times
from cost_models.inference_terms import TERMS
from cost_models.plan import MODERN
from cost_models.plan import Framework
from cost_models.plan import make_plan
from cost_models.training import TrainingEstimate
from cost_models.training import estimate_training
from cost_models.training_comm import data_parallel_traffic_s
from cost_models.training_comm import fsdp_gathers_per_microbatch
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload


@dataclass(frozen=True)
class ExplainRow:
    term: str
    value: float
    note: str


@dataclass(frozen=True)
class ExplainSection:
    """Rows in one unit; ``total`` is what they add up to when ``additive`` (else None)."""

    title: str
    unit: str
    rows: list[ExplainRow]
    total: float | None = None
    additive: bool = True
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _step_rows(
    est: TrainingEstimate, attention_gemm_s: float, config: TrainingConfig
) -> list[ExplainRow]:
    comp, brk = est.compute_breakdown, est.breakdown
    recompute = f"forward work re-run in the backward ({config.recompute} recompute)"
    return [
        ExplainRow("compute.attention_gemms", attention_gemm_s, "QKV and output projections"),
        ExplainRow(
            "compute.mlp_gemms",
            comp["gemm"] - attention_gemm_s,
            "MLP, routed and shared expert GEMMs, router",
        ),
        ExplainRow("compute.attention_core", comp["attention"], "scores, softmax, values"),
        ExplainRow(
            "compute.elementwise",
            comp["memory_bound"],
            "norms, activations, residuals, casts, MoE permutation (HBM-bound)",
        ),
        ExplainRow("compute.logits_and_loss", comp["lm_head_and_loss"], "LM head and loss"),
        ExplainRow("compute.moe_dispatch", comp["moe_overhead"], "fixed work per local expert"),
        ExplainRow("compute.recompute", comp["recompute"], recompute),
        ExplainRow("comm.tensor_parallel", brk["tensor_parallel"], "exposed TP collectives"),
        ExplainRow("comm.context_parallel", brk["context_parallel"], "ring K/V not hidden"),
        ExplainRow("comm.expert_all_to_all", brk["expert_all_to_all"], "exposed EP dispatch"),
        ExplainRow("comm.pipeline_p2p", brk["pipeline_p2p"], "stage-boundary sends"),
        ExplainRow("pipeline_bubble", brk["pipeline_bubble"], "(pp-1)/vpp micro-batch chains"),
        ExplainRow(
            "comm.data_parallel_exposed",
            brk["data_parallel"],
            "DP/ZeRO collectives not hidden behind compute",
        ),
        ExplainRow("optimizer", brk["optimizer"], "Adam update of the local shard"),
    ]


def explain_training(
    model: ModelSpec,
    cluster: ClusterSpec,
    workload: TrainingWorkload,
    config: TrainingConfig,
    calibration: Calibration | None = None,
    framework: Framework = MODERN,
) -> list[ExplainSection]:
    """The step time, DP traffic and memory of ``config`` term by term (ValueError if
    invalid, as ``estimate_training``)."""
    cal = calibration or load_calibration(cluster.gpu.generation)
    est = estimate_training(model, cluster, workload, config, cal, framework)
    plan = make_plan(model, cluster, workload, config, cal, framework)
    attention_gemm_s = attention_gemm_times(plan).total_s * plan.m
    step = ExplainSection(
        "step time",
        "s",
        _step_rows(est, attention_gemm_s, config),
        total=est.step_time_s,
        facts={"micro_batches": plan.m, "dp": plan.dp},
    )
    traffic = data_parallel_traffic_s(plan)
    exposed = est.breakdown["data_parallel"]
    gather_note = {
        "zero3": f"ZeRO-3 gathers, {fsdp_gathers_per_microbatch(plan)} per micro-batch",
        "none": "none: weights are replicated",
    }.get(config.sharding, "sharded optimizer: updated weights gathered once per step")
    dp_rows = [
        ExplainRow("dp.gradient_reduce", traffic["gradient_reduce"], "all-reduce/reduce-scatter"),
        ExplainRow("dp.parameter_gather", traffic["parameter_gather"], gather_note),
        ExplainRow(
            "dp.hidden",
            max(0.0, sum(traffic.values()) - exposed),
            "overlapped with compute (off the critical path)",
        ),
        ExplainRow("dp.exposed", exposed, "= comm.data_parallel_exposed"),
    ]
    traffic_section = ExplainSection(
        "data-parallel collectives before overlap", "s", dp_rows, additive=False
    )
    notes = {
        "weights": "bf16 parameters (ZeRO-3: shard + gathered layers)",
        "gradients": "main gradients",
        "optimizer_state": "fp32 master copy and Adam moments",
        "activations": "in-flight micro-batches, recompute mode, logits",
        "working_margin": "CUDA/NCCL workspaces and fragmentation",
    }
    mem_rows = [ExplainRow(k, v, notes.get(k, "")) for k, v in est.memory_breakdown_gib.items()]
    memory = ExplainSection(
        "memory per GPU",
        "GiB",
        mem_rows,
        total=est.memory_per_gpu_gib,
        facts={
            "binding_term": est.binding_memory_term,
            "capacity_gib": est.memory_capacity_gib,
            "fits": est.fits,
        },
    )
    return [step, traffic_section, memory]


# What each serving-model term is (cost_models/inference_terms.py), for the explain table.
SERVING_TERM_NOTES = {
    "overhead": "per iteration and pipeline stage",
    "layers": "kernel launches and gaps, per layer",
    "moe_layers": "routing and grouped-GEMM launches, per MoE layer",
    "requests": "host work per running request",
    "weights": "weight bytes from HBM",
    "kv_cache": "KV-cache bytes from HBM",
    "gemm": "dense GEMM FLOPs",
    "moe_gemm": "routed-expert GEMM FLOPs",
    "attention": "attention FLOPs",
    "collectives": "collective and hand-off latency",
    "link": "collective and hand-off bytes over the links",
}

SERVING_MEMORY_NOTES = {
    "weights": "weight shard per GPU",
    "activations": "activations of the largest forward",
    "reserve": "framework and CUDA reserve",
    "kv_cache": "KV cache of the running batch",
}


def explain_inference(result: dict[str, Any]) -> list[ExplainSection]:
    """TPOT, prefill and memory of a serving estimate (``InferenceEstimate`` as a dict) by
    term: the serving model's own breakdown, grouped so that each section adds up."""
    brk: dict[str, float] = result["breakdown"]
    decode = [
        ExplainRow(f"decode.{t}", brk[f"decode_step.{t}"], SERVING_TERM_NOTES.get(t, ""))
        for t in TERMS
    ]
    decode.append(
        ExplainRow(
            "serving.prefill_interference",
            brk["serving.prefill_interference"],
            "other requests' prefill work added to each output token",
        )
    )
    prefill = [
        ExplainRow(f"prefill.{t}", brk[f"prefill.{t}"], SERVING_TERM_NOTES.get(t, ""))
        for t in TERMS
    ]
    mem = result["memory_breakdown_gib"]
    return [
        ExplainSection("time per output token (TPOT)", "ms", decode, total=result["tpot_ms"]),
        ExplainSection(
            "one prefill",
            "ms",
            prefill,
            total=sum(r.value for r in prefill),
            facts={
                "ttft_ms": result["ttft_ms"],
                "queue_wait_ms": brk["serving.queue_wait"],
                "kv_transfer_ms": brk["serving.kv_transfer"],
            },
        ),
        ExplainSection(
            "memory per GPU",
            "GiB",
            [ExplainRow(k, v, SERVING_MEMORY_NOTES.get(k, "")) for k, v in mem.items()],
            total=result["memory_per_gpu_gib"],
            facts={"capacity_gib": result["memory_capacity_gib"], "fits": result["fits"]},
        ),
    ]
