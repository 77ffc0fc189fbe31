"""The training search space: knob domains, validity rules, enumeration and Optuna view.

The Cartesian product of the default knob ranges reaches millions of points for large MoE jobs,
while only a small fraction is launchable. The enumerator therefore walks the knobs in
``rules.KNOB_ORDER`` (structural knobs tp, pp, cp first) and checks each rule as soon as the knobs
it reads are fixed, so a failing prefix drops its whole inner sub-product at once. Knobs that no
rule links to earlier knobs (dtype, recompute) form independent blocks: their valid values are
computed once and combined by product instead of being re-checked under every prefix. Rejection
counts use the same walk and multiply the sizes of the skipped sub-products.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import optuna

from search_spaces.config import TRAINING_DTYPES
from search_spaces.config import TrainingConfig
from search_spaces.rules import KNOB_ORDER
from search_spaces.rules import RULES
from search_spaces.rules import Rule
from search_spaces.rules import RuleContext
from search_spaces.rules import divisors
from search_spaces.rules import rule_depth
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

KNOB_NAMES: tuple[str, ...] = tuple(TrainingConfig.model_fields)

MAX_PP = 64  # deeper pipelines leave too few layers per stage and too large a bubble
MAX_CP = 16
LONG_SEQ = 8192  # below this, attention activations are small enough that cp never pays off
MAX_EP = 64


def _powers_of_two(upto: int) -> list[int]:
    return [2**i for i in range(upto.bit_length()) if 2**i <= upto]


def default_knobs(
    model: ModelSpec, cluster: ClusterSpec, workload: TrainingWorkload
) -> dict[str, list[Any]]:
    """The full default range of every knob (in ``TrainingConfig`` field order).

    - tp: powers of two up to min(NVLink domain, num_attention_heads, num_gpus). Tensor
      parallelism all-reduces activations several times per layer, which only the scale-up
      (NVLink) fabric sustains; TP across the scale-out network is never worth it.
    - pp: divisors of num_layers up to min(num_gpus, 64) (equal stages, see the rules).
    - cp: 1, 2, 4, 8, 16 (up to num_gpus) only when seq_len >= 8192; shorter sequences keep
      cp=1 because their attention activations fit without it and ring attention's exchange
      is not hidden behind the short per-chunk compute.
    - ep: [1] for dense models; for MoE, powers of two dividing num_experts up to
      min(num_experts, 64, num_gpus).
    - vpp: 1, 2, 4 (the rules keep those that fit the pipeline).
    - micro_batch_size: 1, 2, 4, 8, at most global_batch_size.
    - sharding, recompute, sequence_parallel: every value.
    - dtype: bf16 plus the low-precision formats the GPU has tensor cores for.
    """
    gpus = cluster.num_gpus
    tp_cap = min(cluster.nvlink_domain_size, model.num_attention_heads, gpus)
    ep = [1]
    if model.is_moe:
        cap = min(model.num_experts, MAX_EP, gpus)
        ep = [e for e in _powers_of_two(cap) if model.num_experts % e == 0]
    return {
        "tp": _powers_of_two(tp_cap),
        "pp": [d for d in divisors(model.num_layers) if d <= min(gpus, MAX_PP)],
        "cp": _powers_of_two(min(MAX_CP, gpus)) if workload.seq_len >= LONG_SEQ else [1],
        "ep": ep,
        "vpp": [1, 2, 4],
        "micro_batch_size": [m for m in (1, 2, 4, 8) if m <= workload.global_batch_size],
        "sharding": ["none", "zero1", "zero2", "zero3"],
        "recompute": ["none", "selective", "full"],
        "sequence_parallel": [False, True],
        "dtype": [d for d in TRAINING_DTYPES if d == DType.bf16 or cluster.gpu.supports(d)],
    }


def _normalise(knob: str, values: list[Any]) -> list[Any]:
    """User values coerced to the knob's type (``"fp8"`` -> DType.fp8), duplicates dropped."""
    if knob not in KNOB_NAMES:
        raise ValueError(f"unknown training knob '{knob}'; knobs: {', '.join(KNOB_NAMES)}")
    if not values:
        raise ValueError(f"space.{knob} is empty; give at least one value")
    out: list[Any] = []
    for v in values:
        coerced = getattr(TrainingConfig.model_validate({knob: v}), knob)
        if coerced not in out:
            out.append(coerced)
    return out


def _choice(value: Any) -> Any:
    """A JSON-able Optuna choice: plain str for enums, ints and bools as they are."""
    return value.value if isinstance(value, DType) else value


class _Point:
    """A mutable, partially assigned point for the walk; rules read it like a config."""

    __slots__ = KNOB_ORDER
    tp: int
    pp: int
    cp: int
    ep: int
    vpp: int
    micro_batch_size: int
    sharding: str
    recompute: str
    sequence_parallel: bool
    dtype: DType


@dataclass
class _BlockStats:
    """Valid count of one independent block and the points each rule removed from it."""

    valid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    example: dict[str, str] = field(default_factory=dict)


class TrainingSpace:
    """The knobs of one training job, the rules that make a point launchable, and views of the
    valid points for exhaustive evaluation (``enumerate``) and for Optuna (``to_optuna``)."""

    def __init__(
        self,
        model: ModelSpec,
        cluster: ClusterSpec,
        workload: TrainingWorkload,
        space: dict[str, list[Any]] | None = None,
    ) -> None:
        self.model = model
        self.cluster = cluster
        self.workload = workload
        self.context = RuleContext(model, cluster, workload)
        knobs = default_knobs(model, cluster, workload)
        for knob, values in (space or {}).items():
            knobs[knob] = _normalise(knob, values)
        self.knobs: dict[str, list[Any]] = knobs
        self.rules: tuple[Rule, ...] = tuple(sorted(RULES, key=rule_depth))
        self._domains = [knobs[k] for k in KNOB_ORDER]
        self._rules_at: list[list[Rule]] = [[] for _ in KNOB_ORDER]
        for rule in self.rules:
            self._rules_at[rule_depth(rule)].append(rule)
        self._blocks = self._independent_blocks()
        self._tails: dict[int, list[tuple[Any, ...]]] = {}
        self._stats: list[_BlockStats] | None = None

    # -- single points --------------------------------------------------------------------------

    def dp(self, config: TrainingConfig) -> int:
        """Data-parallel size of ``config`` on this cluster (0 when not whole)."""
        return self.context.dp(config)

    def violations(self, config: TrainingConfig) -> list[str]:
        """Every rule ``config`` breaks, as ``"rule_name: what to change"``; [] = valid.

        Values outside ``knobs`` are not a violation: a fixed config may be estimated even when
        it lies outside the default search range (e.g. tp=16 across nodes)."""
        out = []
        for rule in self.rules:
            msg = rule.check(self.context, config)
            if msg is not None:
                out.append(f"{rule.name}: {msg}")
        return out

    def is_valid(self, config: TrainingConfig) -> bool:
        return all(rule.check(self.context, config) is None for rule in self.rules)

    def contains(self, config: TrainingConfig) -> bool:
        """True when every knob of ``config`` is among the searched values."""
        return all(getattr(config, k) in self.knobs[k] for k in KNOB_NAMES)

    # -- the walk -------------------------------------------------------------------------------

    def _independent_blocks(self) -> list[tuple[int, int]]:
        """Split KNOB_ORDER at every depth d where no rule checked at or after d reads a knob
        before d; the valid set is then the product of the blocks' valid sets."""
        n = len(KNOB_ORDER)
        cuts = [0]
        for d in range(1, n):
            later = [r for r in self.rules if rule_depth(r) >= d]
            if all(min(KNOB_ORDER.index(k) for k in r.knobs) >= d for r in later):
                cuts.append(d)
        cuts.append(n)
        return list(itertools.pairwise(cuts))

    def _walk(self, point: _Point, depth: int, stop: int) -> Iterator[None]:
        """Assign knobs depth..stop-1 of ``point`` in order, yielding at each valid leaf."""
        name, rules, ctx = KNOB_ORDER[depth], self._rules_at[depth], self.context
        for value in self._domains[depth]:
            setattr(point, name, value)
            if any(r.check(ctx, point) is not None for r in rules):
                continue
            if depth + 1 == stop:
                yield
            else:
                yield from self._walk(point, depth + 1, stop)

    def _iter_block(self, block: tuple[int, int]) -> Iterator[tuple[Any, ...]]:
        start, stop = block
        point = _Point()
        names = KNOB_ORDER[start:stop]
        for _ in self._walk(point, start, stop):
            yield tuple(getattr(point, k) for k in names)

    def _tail(self, index: int) -> list[tuple[Any, ...]]:
        """Valid values of block ``index`` (> 0), computed once: later blocks are small."""
        if index not in self._tails:
            self._tails[index] = list(self._iter_block(self._blocks[index]))
        return self._tails[index]

    def _count(self, point: _Point, depth: int, stop: int, stats: _BlockStats) -> int:
        """Valid completions of ``point`` over knobs depth..stop-1; charges each rejected
        sub-product to the first rule that fails, multiplying the inner domain sizes."""
        name, rules, ctx = KNOB_ORDER[depth], self._rules_at[depth], self.context
        inner = math.prod(len(d) for d in self._domains[depth + 1 : stop])
        valid = 0
        for value in self._domains[depth]:
            setattr(point, name, value)
            for rule in rules:
                msg = rule.check(ctx, point)
                if msg is not None:
                    stats.rejected[rule.name] += inner
                    stats.example.setdefault(rule.name, msg)
                    break
            else:
                last = depth + 1 == stop
                valid += 1 if last else self._count(point, depth + 1, stop, stats)
        return valid

    def _block_stats(self) -> list[_BlockStats]:
        if self._stats is None:
            self._stats = []
            for start, stop in self._blocks:
                stats = _BlockStats()
                stats.valid = self._count(_Point(), start, stop, stats)
                self._stats.append(stats)
        return self._stats

    # -- the valid set --------------------------------------------------------------------------

    def total_points(self) -> int:
        """Size of the Cartesian product of the knobs, valid or not."""
        return math.prod(len(v) for v in self.knobs.values())

    def enumerate(self, limit: int | None = None) -> Iterator[TrainingConfig]:
        """Valid points in a deterministic order (knobs in KNOB_ORDER, values in ``knobs``
        order), lazily: the first block is walked on demand, so ``limit`` stops early."""
        tails = [self._tail(i) for i in range(1, len(self._blocks))]
        if not all(tails):
            return
        names = KNOB_ORDER
        emitted = 0
        for head in self._iter_block(self._blocks[0]):
            for rest in itertools.product(*tails):
                if limit is not None and emitted >= limit:
                    return
                values = head + tuple(itertools.chain.from_iterable(rest))
                yield TrainingConfig.model_validate(dict(zip(names, values, strict=True)))
                emitted += 1

    def count_valid(self, cap: int | None = None) -> int:
        """Number of valid points; with ``cap``, stops counting once ``cap`` is reached."""
        if cap is None or self._stats is not None:
            total = math.prod(s.valid for s in self._block_stats())
            return total if cap is None else min(total, cap)
        per_head = math.prod(len(self._tail(i)) for i in range(1, len(self._blocks)))
        if per_head == 0 or cap <= 0:
            return 0
        count = 0
        for _ in self._iter_block(self._blocks[0]):
            count += per_head
            if count >= cap:
                return cap
        return count

    def rejection_counts(self) -> dict[str, int]:
        """Rule name -> points of the full product it removes (each invalid point charged to the
        first rule it breaks, in ``self.rules`` order), most first; sums to total - valid."""
        stats = self._block_stats()
        sizes = [math.prod(len(d) for d in self._domains[a:b]) for a, b in self._blocks]
        counts: Counter[str] = Counter()
        for i, block in enumerate(stats):
            before = math.prod(s.valid for s in stats[:i])
            after = math.prod(sizes[i + 1 :])
            for rule, n in block.rejected.items():
                counts[rule] += before * n * after
        return dict(counts.most_common())

    def explain_empty(self) -> str:
        """Why the space has no valid point: the rule that removed the most, an example
        message with its fix, and the other rules that removed points."""
        total, valid = self.total_points(), self.count_valid()
        counts = self.rejection_counts()
        if valid:
            return f"the space has {valid} valid configurations out of {total}"
        examples: dict[str, str] = {}
        for block in self._block_stats():
            examples.update(block.example)
        top, removed = next(iter(counts.items()))
        lines = [
            f"no valid training configuration among the {total} points of the space; "
            f"{top} removed the most ({removed}): {examples[top]}"
        ]
        others = [f"{rule} ({n})" for rule, n in counts.items() if rule != top]
        if others:
            lines.append(f"other rules that removed points: {', '.join(others)}")
        return "\n".join(lines)

    # -- Optuna ---------------------------------------------------------------------------------

    def to_optuna(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """A CategoricalDistribution per knob with more than one value (JSON-able choices);
        single-value knobs are fixed and restored by ``decode``."""
        return {
            k: optuna.distributions.CategoricalDistribution([_choice(v) for v in values])
            for k, values in self.knobs.items()
            if len(values) > 1
        }

    def fixed(self) -> dict[str, Any]:
        """Knobs with a single value, which Optuna does not see."""
        return {k: values[0] for k, values in self.knobs.items() if len(values) == 1}

    def decode(self, params: dict[str, Any]) -> TrainingConfig:
        """Optuna params (the non-fixed knobs) plus the fixed knobs -> a TrainingConfig."""
        unknown = sorted(set(params) - set(self.knobs))
        if unknown:
            raise ValueError(f"unknown training knob(s) {', '.join(unknown)} in params")
        missing = [k for k, v in self.knobs.items() if len(v) > 1 and k not in params]
        if missing:
            raise ValueError(f"params lack the searched knob(s) {', '.join(missing)}")
        return TrainingConfig.model_validate({**self.fixed(), **params})

    def encode(self, config: TrainingConfig) -> dict[str, Any]:
        """The inverse of ``decode``: Optuna params of ``config`` (e.g. for enqueue_trial)."""
        dists = self.to_optuna()
        return {k: _choice(getattr(config, k)) for k in dists}
