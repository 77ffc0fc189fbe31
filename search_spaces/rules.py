"""Validity rules of the training search space.

Each rule is a named, pure function of (context, knobs) that returns ``None`` when the point is
fine and otherwise one sentence naming the offending values and how to fix them. A rule declares
the knobs it reads (``Rule.knobs``) so the enumerator in ``training_space`` can check it as soon as
those knobs are fixed and drop every inner sub-product at once. ``RULES`` is ordered by the knob
at which a rule becomes checkable (``KNOB_ORDER``), so the first rule a point breaks in
``violations`` is the same rule the enumerator charges it to.

The rules follow what Megatron-LM (and Megatron-Core based stacks such as NeMo) accept; where a
framework is more permissive (uneven pipeline stages, TorchTitan's FSDP + PP) the space stays on
the conservative side so every point it proposes can be launched as is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from search_spaces.config import TRAINING_DTYPES
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

# Structural knobs first: they decide dp, which most other rules need, and they prune most.
KNOB_ORDER: tuple[str, ...] = (
    "tp",
    "pp",
    "cp",
    "vpp",
    "ep",
    "micro_batch_size",
    "sharding",
    "sequence_parallel",
    "dtype",
    "recompute",
)


class Knobs(Protocol):
    """What a rule may read: a ``TrainingConfig`` or the enumerator's partial point."""

    @property
    def tp(self) -> int: ...
    @property
    def pp(self) -> int: ...
    @property
    def cp(self) -> int: ...
    @property
    def ep(self) -> int: ...
    @property
    def vpp(self) -> int: ...
    @property
    def micro_batch_size(self) -> int: ...
    @property
    def sharding(self) -> str: ...
    @property
    def recompute(self) -> str: ...
    @property
    def sequence_parallel(self) -> bool: ...
    @property
    def dtype(self) -> DType: ...


@dataclass(frozen=True)
class RuleContext:
    """The fixed part of a tuning problem that the rules read besides the knobs."""

    model: ModelSpec
    cluster: ClusterSpec
    workload: TrainingWorkload

    def dp(self, c: Knobs) -> int:
        """Data-parallel size num_gpus / (tp*pp*cp); 0 when that is not a whole number."""
        mp = c.tp * c.pp * c.cp
        n = self.cluster.num_gpus
        return n // mp if n % mp == 0 else 0


RuleCheck = Callable[[RuleContext, Knobs], str | None]


@dataclass(frozen=True)
class Rule:
    """A named check and the knobs it reads (nothing else may influence its answer)."""

    name: str
    knobs: tuple[str, ...]
    check: RuleCheck

    @property
    def why(self) -> str:
        """The rationale: the first paragraph of the check's docstring."""
        doc = self.check.__doc__ or ""
        return " ".join(doc.split("\n\n")[0].split())


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _fmt(values: list[int]) -> str:
    return ", ".join(str(v) for v in values) if values else "none"


def _good_tp(ctx: RuleContext) -> list[int]:
    h, kv = ctx.model.num_attention_heads, ctx.model.num_kv_heads
    cap = ctx.cluster.num_gpus
    return [t for t in divisors(h) if t <= cap and (kv % t == 0 or t % kv == 0)]


def tp_divides_heads(ctx: RuleContext, c: Knobs) -> str | None:
    """Every tensor-parallel rank computes whole attention heads, so tp must divide the query
    heads; the K/V heads are either split evenly (tp divides num_kv_heads) or, with GQA/MQA and
    tp above the KV-head count, replicated (tp a multiple of num_kv_heads), as in Megatron."""
    h, kv = ctx.model.num_attention_heads, ctx.model.num_kv_heads
    if h % c.tp:
        return (
            f"tp={c.tp} does not divide num_attention_heads={h}, so ranks cannot hold whole "
            f"heads; use tp in {_fmt(_good_tp(ctx))}"
        )
    if kv % c.tp and c.tp % kv:
        return (
            f"tp={c.tp} neither divides num_kv_heads={kv} (to split the KV heads) nor is a "
            f"multiple of it (to replicate them); use tp in {_fmt(_good_tp(ctx))}"
        )
    return None


def pp_divides_layers(ctx: RuleContext, c: Knobs) -> str | None:
    """Pipeline stages hold equal numbers of layers (Megatron's default split), so pp must
    divide num_layers; uneven first/last stages are left out of the space."""
    n = ctx.model.num_layers
    if n % c.pp:
        ok = [d for d in divisors(n) if d <= ctx.cluster.num_gpus]
        return f"pp={c.pp} does not divide num_layers={n}; use pp in {_fmt(ok)}"
    return None


def cp_divides_seq(ctx: RuleContext, c: Knobs) -> str | None:
    """Load-balanced causal ring attention cuts each sequence into 2*cp chunks (rank i takes
    chunks i and 2*cp-1-i), so seq_len must be a multiple of 2*cp when cp > 1."""
    s = ctx.workload.seq_len
    if c.cp > 1 and s % (2 * c.cp):
        ok = [1] + [p for p in (2, 4, 8, 16, 32) if s % (2 * p) == 0]
        return (
            f"seq_len={s} is not a multiple of 2*cp={2 * c.cp} (load-balanced ring attention "
            f"splits each sequence into 2*cp chunks); use cp in {_fmt(ok)} or pad seq_len to a "
            f"multiple of {2 * c.cp}"
        )
    return None


def model_parallel_divides_gpus(ctx: RuleContext, c: Knobs) -> str | None:
    """The GPUs are tiled by model-parallel groups of tp*pp*cp ranks; dp is the number of such
    groups and must be a whole number."""
    mp = c.tp * c.pp * c.cp
    n = ctx.cluster.num_gpus
    if n % mp:
        return (
            f"tp*pp*cp = {c.tp}*{c.pp}*{c.cp} = {mp} does not divide num_gpus={n}, so there is "
            f"no whole data-parallel size; pick tp, pp and cp whose product divides {n}"
        )
    return None


def vpp_needs_pp(ctx: RuleContext, c: Knobs) -> str | None:
    """Virtual stages interleave the layers of a pipeline across its ranks; with pp=1 there is
    no pipeline to interleave and vpp > 1 would only duplicate the vpp=1 point."""
    if c.vpp > 1 and c.pp == 1:
        return f"vpp={c.vpp} needs pp > 1 (there is no pipeline to interleave); set vpp=1"
    return None


def vpp_divides_layers(ctx: RuleContext, c: Knobs) -> str | None:
    """With the interleaved schedule every one of the pp*vpp virtual stages holds the same
    number of layers, so pp*vpp must divide num_layers."""
    n = ctx.model.num_layers
    if c.vpp > 1 and n % (c.pp * c.vpp):
        per_rank = n // c.pp if n % c.pp == 0 else 0
        ok = [v for v in divisors(per_rank) if v <= 8] if per_rank else [1]
        return (
            f"num_layers={n} is not divisible by pp*vpp = {c.pp}*{c.vpp} = {c.pp * c.vpp}, so "
            f"virtual stages cannot be equal; use vpp in {_fmt(ok)}"
        )
    return None


def ep_divides_experts(ctx: RuleContext, c: Knobs) -> str | None:
    """Expert parallelism places whole routed experts on ranks: it exists only for MoE models
    and ep must divide num_experts."""
    e = ctx.model.num_experts
    if c.ep > 1 and not ctx.model.is_moe:
        return f"ep={c.ep} applies only to MoE models and {ctx.model.name} is dense; set ep=1"
    if c.ep > 1 and e % c.ep:
        ok = [d for d in divisors(e) if d <= ctx.cluster.num_gpus]
        return (
            f"ep={c.ep} does not divide num_experts={e}, so ranks cannot hold whole experts; "
            f"use ep in {_fmt(ok)}"
        )
    return None


def ep_divides_dp(ctx: RuleContext, c: Knobs) -> str | None:
    """Megatron folds the expert-parallel group into the data- and context-parallel ranks of the
    MoE layers (expert-data-parallel = dp*cp/ep), so ep must divide dp*cp."""
    dp = ctx.dp(c)
    if dp and c.ep > 1 and (dp * c.cp) % c.ep:
        ok = [d for d in divisors(dp * c.cp) if ctx.model.num_experts % d == 0]
        return (
            f"ep={c.ep} does not divide dp*cp = {dp}*{c.cp} = {dp * c.cp} (expert-parallel "
            f"groups are carved out of the data- and context-parallel ranks); use ep in "
            f"{_fmt(ok)} or lower tp*pp to raise dp"
        )
    return None


def batch_divisible(ctx: RuleContext, c: Knobs) -> str | None:
    """A step is dp replicas each running whole micro-batches, so dp*micro_batch_size must
    divide global_batch_size (the number of micro-batches is then a whole number)."""
    dp = ctx.dp(c)
    gbs = ctx.workload.global_batch_size
    if not dp or gbs % (dp * c.micro_batch_size) == 0:
        return None
    if gbs % dp:
        return (
            f"dp={dp} does not divide global_batch_size={gbs}, so no micro_batch_size works; "
            f"change tp*pp*cp so that num_gpus/(tp*pp*cp) divides {gbs}"
        )
    ok = divisors(gbs // dp)[:8]
    return (
        f"dp*micro_batch_size = {dp}*{c.micro_batch_size} = {dp * c.micro_batch_size} does not "
        f"divide global_batch_size={gbs}; use micro_batch_size in {_fmt(ok)}"
    )


def vpp_microbatches(ctx: RuleContext, c: Knobs) -> str | None:
    """Megatron's interleaved 1F1B schedule runs micro-batches in groups of pp, so it requires
    num_microbatches = global_batch_size / (dp*micro_batch_size) to be a multiple of pp when
    vpp > 1 (newer Megatron-Core relaxes this; the space keeps the portable rule)."""
    dp = ctx.dp(c)
    gbs = ctx.workload.global_batch_size
    if c.vpp == 1 or c.pp == 1 or not dp or gbs % (dp * c.micro_batch_size):
        return None
    nmb = gbs // (dp * c.micro_batch_size)
    if nmb % c.pp:
        return (
            f"the interleaved schedule (vpp={c.vpp}) needs num_microbatches = {gbs}/"
            f"({dp}*{c.micro_batch_size}) = {nmb} to be a multiple of pp={c.pp}; lower "
            f"micro_batch_size, set vpp=1, or raise global_batch_size"
        )
    return None


def sharding_needs_dp(ctx: RuleContext, c: Knobs) -> str | None:
    """ZeRO shards optimizer state, gradients (and with zero3 parameters) over the ranks that
    hold the same weights: the dp*cp data- and context-parallel ranks (Megatron's distributed
    optimizer uses that group). With dp*cp = 1 there is nothing to shard and zero* is the same
    point as sharding=none, so it is rejected to keep duplicates off the Pareto front."""
    dp = ctx.dp(c)
    if c.sharding != "none" and dp and dp * c.cp == 1:
        return (
            f"sharding={c.sharding} with dp*cp = 1 has no replicas to shard over and equals "
            f"sharding=none; use sharding=none or lower tp*pp to get dp > 1"
        )
    return None


def zero3_with_pp(ctx: RuleContext, c: Knobs) -> str | None:
    """zero3 (FSDP) shards parameters that pipeline stages already partition and re-gathers them
    for every micro-batch; Megatron does not combine the two (TorchTitan can, at that cost), so
    the space keeps zero3 to pp=1."""
    if c.sharding == "zero3" and c.pp > 1:
        return (
            f"sharding=zero3 (FSDP) is not combined with pipeline parallelism (pp={c.pp}); use "
            f"zero1 or zero2 with pp > 1, or pp=1 with zero3"
        )
    return None


def sp_needs_tp(ctx: RuleContext, c: Knobs) -> str | None:
    """Sequence parallelism splits the tensor-parallel region's norms and dropouts along the
    sequence across the tp ranks; with tp=1 it is a no-op duplicate of sequence_parallel=False."""
    if c.sequence_parallel and c.tp == 1:
        return (
            "sequence_parallel=True needs tp > 1 (it splits activations over the tp ranks); "
            "set sequence_parallel=False or raise tp"
        )
    return None


def dtype_supported(ctx: RuleContext, c: Knobs) -> str | None:
    """fp8 and fp4 GEMMs need tensor cores for them (Hopper/Ada for fp8, Blackwell for fp4).
    bf16 is always allowed: it is the baseline training precision, and GPUs without bf16 tensor
    cores (V100) run it at their fp16 rate in the cost model."""
    gpu = ctx.cluster.gpu
    if c.dtype not in TRAINING_DTYPES:
        return f"dtype={c.dtype} is not a training precision; use one of bf16, fp8, fp4"
    if c.dtype != DType.bf16 and not gpu.supports(c.dtype):
        ok = [str(d) for d in TRAINING_DTYPES if d == DType.bf16 or gpu.supports(d)]
        return (
            f"dtype={c.dtype} needs {c.dtype} tensor cores, which {gpu.name} does not have; "
            f"use dtype in {', '.join(ok)}"
        )
    return None


RULES: tuple[Rule, ...] = (
    Rule("tp_divides_heads", ("tp",), tp_divides_heads),
    Rule("pp_divides_layers", ("pp",), pp_divides_layers),
    Rule("cp_divides_seq", ("cp",), cp_divides_seq),
    Rule("model_parallel_divides_gpus", ("tp", "pp", "cp"), model_parallel_divides_gpus),
    Rule("vpp_needs_pp", ("pp", "vpp"), vpp_needs_pp),
    Rule("vpp_divides_layers", ("pp", "vpp"), vpp_divides_layers),
    Rule("ep_divides_experts", ("ep",), ep_divides_experts),
    Rule("ep_divides_dp", ("tp", "pp", "cp", "ep"), ep_divides_dp),
    Rule("batch_divisible", ("tp", "pp", "cp", "micro_batch_size"), batch_divisible),
    Rule(
        "vpp_microbatches",
        ("tp", "pp", "cp", "vpp", "micro_batch_size"),
        vpp_microbatches,
    ),
    Rule("sharding_needs_dp", ("tp", "pp", "cp", "sharding"), sharding_needs_dp),
    Rule("zero3_with_pp", ("pp", "sharding"), zero3_with_pp),
    Rule("sp_needs_tp", ("tp", "sequence_parallel"), sp_needs_tp),
    Rule("dtype_supported", ("dtype",), dtype_supported),
)


def rule_depth(rule: Rule) -> int:
    """Position in ``KNOB_ORDER`` of the last knob the rule reads: where it becomes checkable."""
    return max(KNOB_ORDER.index(k) for k in rule.knobs)
