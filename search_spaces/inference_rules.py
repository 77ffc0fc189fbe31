"""Validity rules of the inference search space.

As in ``rules`` (training), each rule is a named pure function of (context, knobs) returning
``None`` when the point is fine and otherwise one sentence with the offending values and a fix;
it declares the knobs it reads so the enumerator checks it as soon as they are fixed. Knobs are
flat here: the aggregated worker's ``tp``, ``ep``, ... and the pools' ``prefill_tp``,
``decode_workers``, ... The worker-shape rules exist three times (aggregated worker, prefill
pool, decode pool); a shape rule is silent for the shape the point's mode does not use.

The rules follow what the three frameworks accept today: vLLM enables expert parallelism over
the whole worker or not at all (``--enable-expert-parallel``: ep = tp * dp), TensorRT-LLM's
attention DP gives every rank its own requests (``enable_attention_dp``: attention tp = 1), and
SGLang splits ``--tp`` GPUs into ``--dp`` attention ranks with any ``--ep-size`` dividing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from search_spaces.inference_config import BACKEND_KV_DTYPES
from search_spaces.inference_config import BACKEND_WEIGHT_DTYPES
from search_spaces.rules import divisors
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

# Mode first (it decides which knobs matter), then what prunes most: formats, worker shape.
KNOB_ORDER: tuple[str, ...] = (
    "mode",
    "backend",
    "weight_dtype",
    "kv_dtype",
    "tp",
    "attention_dp",
    "ep",
    "pp",
    "replicas",
    "max_batch_size",
    "prefill_tp",
    "prefill_attention_dp",
    "prefill_ep",
    "prefill_pp",
    "prefill_workers",
    "prefill_max_batch_size",
    "decode_tp",
    "decode_attention_dp",
    "decode_ep",
    "decode_pp",
    "decode_workers",
    "decode_max_batch_size",
)
SHAPES: tuple[str, ...] = ("", "prefill_", "decode_")
GIB = 2**30


@dataclass(frozen=True)
class RuleContext:
    """The fixed part of a serving problem that the rules read besides the knobs."""

    model: ModelSpec
    cluster: ClusterSpec
    workload: InferenceWorkload


RuleCheck = Callable[[RuleContext, Any], str | None]


@dataclass(frozen=True)
class Rule:
    """A named check and the knobs it reads (nothing else may influence its answer)."""

    name: str
    knobs: tuple[str, ...]
    check: RuleCheck


@dataclass(frozen=True)
class Shape:
    """One worker shape read from a point: attention tp, pipeline, experts, attention DP."""

    label: str  # "" (aggregated worker), "prefill " or "decode "
    tp: int
    pp: int
    ep: int
    attention_dp: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.attention_dp


def shape_of(point: Any, prefix: str) -> Shape | None:
    """The worker shape the prefix names, or None when the point's mode does not use it."""
    pooled = prefix != ""
    if (point.mode == "disaggregated") != pooled:
        return None
    # A rule reads only the knobs it declares; the others may not be assigned yet (or hold a
    # value left from another branch of the walk), so they read as 1.
    values = [getattr(point, prefix + k, None) or 1 for k in ("tp", "pp", "ep", "attention_dp")]
    return Shape(prefix.replace("_", " "), *values)


def _fmt(values: list[int]) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


def weight_bytes_per_gpu(model: ModelSpec, dtype: DType, shape: Shape) -> float:
    """Weights one GPU of ``shape`` holds on average over the pipeline stages (no quantization
    scales): attention and dense MLPs split over tp and replicated per attention-DP rank,
    routed experts split over all tp*attention_dp GPUs of a stage, embeddings in bf16 over tp.
    A lower bound of the cost model's figure, cheap enough to prune the space with."""
    per_rank = model.num_layers * model.attention_params_per_layer()
    per_rank += model.num_dense_ffn_layers * model.dense_mlp_params()
    routed = 0.0
    if model.is_moe:
        shared = model.num_shared_experts * model.expert_params()
        per_rank += model.num_moe_layers * (shared + model.hidden_size * model.num_experts)
        routed = model.num_moe_layers * model.num_experts * model.expert_params()
    linear = per_rank / shape.tp + routed / (shape.tp * shape.attention_dp)
    embeddings = model.embedding_params() * DType.bf16.bytes / shape.tp
    return (linear * dtype.bytes + embeddings) / shape.pp


# -- formats -------------------------------------------------------------------------------------


def backend_supports_gpu(ctx: RuleContext, p: Any) -> str | None:
    """TensorRT-LLM runs on NVIDIA GPUs only; vLLM and SGLang also serve AMD Instinct."""
    if p.backend == "trtllm" and ctx.cluster.gpu.vendor != "nvidia":
        return (
            f"backend=trtllm runs on NVIDIA GPUs only, not {ctx.cluster.gpu.name}; use vllm or "
            "sglang"
        )
    return None


def weight_dtype_supported(ctx: RuleContext, p: Any) -> str | None:
    """fp8, int8 and fp4 weights run as W8A8/W4A4 GEMMs that need tensor cores for that format
    (fp8: Ada/Hopper, fp4: Blackwell); int4 is weight-only (W4A16), dequantised into bf16 GEMMs
    on any GPU; and each framework serves only the formats its kernels implement."""
    dtype, gpu = p.weight_dtype, ctx.cluster.gpu
    if dtype not in BACKEND_WEIGHT_DTYPES[p.backend]:
        ok = ", ".join(str(d) for d in BACKEND_WEIGHT_DTYPES[p.backend])
        return f"backend={p.backend} does not serve weight_dtype={dtype}; use one of {ok}"
    if dtype in (DType.fp8, DType.int8, DType.fp4) and not gpu.supports(dtype):
        return (
            f"weight_dtype={dtype} needs {dtype} tensor cores, which {gpu.name} lacks; use bf16 "
            "or int4"
        )
    return None


def kv_dtype_supported(ctx: RuleContext, p: Any) -> str | None:
    """An fp8 KV cache is read by fp8-aware attention kernels (Hopper/Ada and later; vLLM also
    converts in software on older GPUs); a 4-bit KV cache (NVFP4 / fp4_e2m1) needs Blackwell."""
    dtype, gpu = p.kv_dtype, ctx.cluster.gpu
    if dtype not in BACKEND_KV_DTYPES[p.backend]:
        ok = ", ".join(str(d) for d in BACKEND_KV_DTYPES[p.backend])
        return f"backend={p.backend} does not store a kv_dtype={dtype} cache; use one of {ok}"
    if dtype == DType.fp8 and p.backend != "vllm" and not gpu.supports(DType.fp8):
        return (
            f"kv_dtype=fp8 with backend={p.backend} needs fp8 support, which {gpu.name} lacks; "
            "use bf16"
        )
    if dtype == DType.int4 and not gpu.supports(DType.fp4):
        return f"a 4-bit KV cache needs fp4 support (Blackwell), which {gpu.name} lacks; use fp8"
    return None


# -- worker shapes (aggregated worker and both pools) ----------------------------------------


def _good_tp(ctx: RuleContext) -> list[int]:
    h, kv = ctx.model.num_attention_heads, ctx.model.num_kv_heads
    return [t for t in divisors(h) if t <= ctx.cluster.num_gpus and (kv % t == 0 or t % kv == 0)]


def tp_divides_heads(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """Each tensor-parallel rank computes whole query heads, and the KV heads are either split
    evenly or (tp above the KV-head count, GQA/MQA) replicated."""
    h, kv = ctx.model.num_attention_heads, ctx.model.num_kv_heads
    if h % s.tp or (kv % s.tp and s.tp % kv):
        return (
            f"{s.label}tp={s.tp} must divide num_attention_heads={h} and divide or be a multiple "
            f"of num_kv_heads={kv}; use tp in {_fmt(_good_tp(ctx))}"
        )
    return None


def attention_dp_needs_moe(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """Attention data parallelism shares one set of MoE experts between ranks; for a dense model
    the same GPUs are better used as independent workers (replicas), which need no collective."""
    if s.attention_dp > 1 and not ctx.model.is_moe:
        return (
            f"{s.label}attention_dp={s.attention_dp} applies to MoE models; for a dense model use "
            "replicas"
        )
    return None


def ep_divides_experts(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """Expert parallelism places whole routed experts on ranks: MoE models only, and ep must
    divide num_experts."""
    e = ctx.model.num_experts
    if s.ep > 1 and not ctx.model.is_moe:
        return (
            f"{s.label}ep={s.ep} applies only to MoE models and {ctx.model.name} is dense; set ep=1"
        )
    if s.ep > 1 and e % s.ep:
        return (
            f"{s.label}ep={s.ep} does not divide num_experts={e}; use ep in {_fmt(divisors(e)[:8])}"
        )
    return None


def ep_divides_worker(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """The experts of a stage are spread over its tp*attention_dp GPUs, ep of them holding
    different experts and the rest splitting each expert, so ep must divide tp*attention_dp."""
    n = s.tp * s.attention_dp
    if n % s.ep:
        return (
            f"{s.label}ep={s.ep} must divide tp*attention_dp = {n}; use ep in {_fmt(divisors(n))}"
        )
    return None


def backend_parallel_layout(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """vLLM turns expert parallelism on for the whole worker (ep = tp * attention_dp) or off;
    TensorRT-LLM's attention DP makes every GPU its own attention rank (tp = 1)."""
    n = s.tp * s.attention_dp
    if p.backend == "vllm" and s.ep not in (1, n):
        return (
            f"vllm runs {s.label}ep=1 or ep = tp*attention_dp = {n} (--enable-expert-parallel), "
            f"not {s.ep}"
        )
    if p.backend == "trtllm" and s.attention_dp > 1 and s.tp > 1:
        return (
            f"trtllm attention DP puts one rank per GPU: use {s.label}tp=1, attention_dp={n} "
            f"instead of tp={s.tp}, attention_dp={s.attention_dp}"
        )
    return None


def pp_within_layers(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """Every pipeline stage holds at least one layer (the frameworks split layers unevenly)."""
    if s.pp > ctx.model.num_layers:
        return f"{s.label}pp={s.pp} exceeds num_layers={ctx.model.num_layers}; lower pp"
    return None


def worker_fits_cluster(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """A worker spans tp*pp*attention_dp GPUs, which the cluster must have."""
    n = ctx.cluster.num_gpus
    if s.gpus > n:
        return f"a {s.label}worker needs tp*pp*attention_dp = {s.gpus} GPUs but the cluster has {n}"
    return None


def weights_fit_memory(ctx: RuleContext, s: Shape, p: Any) -> str | None:
    """The weights alone must fit in GPU memory, or no batch can run (the cost model then adds
    quantization scales, activations, the backend's reserve and the KV cache)."""
    need = weight_bytes_per_gpu(ctx.model, p.weight_dtype, s) / GIB
    cap = ctx.cluster.gpu.memory_gib
    if need > cap:
        return (
            f"{s.label}weights need {need:.0f} GiB per GPU at {p.weight_dtype} with "
            f"tp*pp*attention_dp = {s.gpus}, more than {cap:g} GiB; use more GPUs per worker "
            "or a smaller weight_dtype"
        )
    return None


ShapeCheck = Callable[[RuleContext, Shape, Any], str | None]


def _shape_rule(name: str, knobs: tuple[str, ...], check: ShapeCheck, prefix: str) -> Rule:
    """The rule ``check`` applied to the shape ``prefix`` names (silent in the other mode)."""

    def run(ctx: RuleContext, p: Any) -> str | None:
        shape = shape_of(p, prefix)
        return None if shape is None else check(ctx, shape, p)

    run.__doc__ = check.__doc__
    extra = tuple(k for k in knobs if k in ("backend", "weight_dtype"))
    own = tuple(prefix + k for k in knobs if k not in extra)
    return Rule(prefix + name, ("mode", *extra, *own), run)


# -- deployment ----------------------------------------------------------------------------------


def replicas_fit_cluster(ctx: RuleContext, p: Any) -> str | None:
    """``replicas`` workers of tp*pp*attention_dp GPUs must fit in the cluster."""
    if p.mode != "aggregated" or p.replicas is None:
        return None
    need = p.replicas * p.tp * p.pp * p.attention_dp
    if need > ctx.cluster.num_gpus:
        return (
            f"replicas={p.replicas} workers need {need} GPUs, the cluster has "
            f"{ctx.cluster.num_gpus}"
        )
    return None


def disaggregated_needs_gpus(ctx: RuleContext, p: Any) -> str | None:
    """Prefill and decode pools need at least one GPU each."""
    if p.mode == "disaggregated" and ctx.cluster.num_gpus < 2:
        return "mode=disaggregated needs at least 2 GPUs (one per pool); use aggregated"
    return None


def pools_fill_cluster(ctx: RuleContext, p: Any) -> str | None:
    """The two pools together use the whole cluster: num_gpus is the sum over both pools."""
    if p.mode != "disaggregated":
        return None
    pre = p.prefill_tp * p.prefill_pp * p.prefill_attention_dp * p.prefill_workers
    dec = p.decode_tp * p.decode_pp * p.decode_attention_dp * p.decode_workers
    n = ctx.cluster.num_gpus
    if pre + dec != n:
        return (
            f"the prefill pool ({pre} GPUs) and the decode pool ({dec} GPUs) must add up to "
            f"num_gpus={n}"
        )
    return None


def _format_rules() -> list[Rule]:
    return [
        Rule("backend_supports_gpu", ("backend",), backend_supports_gpu),
        Rule("weight_dtype_supported", ("backend", "weight_dtype"), weight_dtype_supported),
        Rule("kv_dtype_supported", ("backend", "kv_dtype"), kv_dtype_supported),
        Rule("disaggregated_needs_gpus", ("mode",), disaggregated_needs_gpus),
    ]


def _shape_rules(prefix: str) -> list[Rule]:
    return [
        _shape_rule("tp_divides_heads", ("tp",), tp_divides_heads, prefix),
        _shape_rule("attention_dp_needs_moe", ("attention_dp",), attention_dp_needs_moe, prefix),
        _shape_rule("ep_divides_experts", ("ep",), ep_divides_experts, prefix),
        _shape_rule("ep_divides_worker", ("tp", "attention_dp", "ep"), ep_divides_worker, prefix),
        _shape_rule(
            "backend_parallel_layout",
            ("backend", "tp", "attention_dp", "ep"),
            backend_parallel_layout,
            prefix,
        ),
        _shape_rule("pp_within_layers", ("pp",), pp_within_layers, prefix),
        _shape_rule(
            "worker_fits_cluster", ("tp", "attention_dp", "pp"), worker_fits_cluster, prefix
        ),
        _shape_rule(
            "weights_fit_memory",
            ("weight_dtype", "tp", "attention_dp", "ep", "pp"),
            weights_fit_memory,
            prefix,
        ),
    ]


_POOL_KNOBS = tuple(
    f"{pool}_{k}" for pool in ("prefill", "decode") for k in ("tp", "pp", "attention_dp", "workers")
)

RULES: tuple[Rule, ...] = (
    *_format_rules(),
    *(rule for prefix in SHAPES for rule in _shape_rules(prefix)),
    Rule(
        "replicas_fit_cluster",
        ("mode", "tp", "attention_dp", "pp", "replicas"),
        replicas_fit_cluster,
    ),
    Rule("pools_fill_cluster", ("mode", *_POOL_KNOBS), pools_fill_cluster),
)


def rule_depth(rule: Rule) -> int:
    """Position in ``KNOB_ORDER`` of the last knob the rule reads: where it becomes checkable."""
    return max(KNOB_ORDER.index(k) for k in rule.knobs)
