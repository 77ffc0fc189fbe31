"""The inference search space: knob domains, validity rules, enumeration and Optuna view.

Knobs are flat (``tp``, ``prefill_tp``, ``decode_workers``, ...; see ``inference_rules``) and the
mode decides which of them matter: an aggregated point leaves the pool knobs unset, a
disaggregated point leaves the aggregated worker's knobs at their defaults. The enumerator walks
the knobs in ``inference_rules.KNOB_ORDER`` with those mode-dependent domains and checks each rule
as soon as the knobs it reads are fixed, so a failing prefix drops its whole sub-product. The
decode pool's worker count is not walked but solved: the pools must add up to the cluster, so
given the rest of the point at most one value is possible.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from types import SimpleNamespace
from typing import Any

import optuna

from search_spaces.inference_config import AGGREGATED_FIELDS
from search_spaces.inference_config import INFERENCE_KNOBS
from search_spaces.inference_config import POOL_KNOBS
from search_spaces.inference_config import InferenceConfig
from search_spaces.inference_config import coerce_knob_value
from search_spaces.inference_defaults import MODES
from search_spaces.inference_defaults import default_knobs
from search_spaces.inference_rules import KNOB_ORDER
from search_spaces.inference_rules import RULES
from search_spaces.inference_rules import SHAPES
from search_spaces.inference_rules import Rule
from search_spaces.inference_rules import RuleContext
from search_spaces.inference_rules import rule_depth
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import InferenceWorkload
from search_spaces.specs import ModelSpec

SHAPE_KNOBS = ("tp", "attention_dp", "ep", "pp")  # one worker shape, contiguous in KNOB_ORDER
BLOCK_STARTS = frozenset(KNOB_ORDER.index(p + "tp") for p in SHAPES)
_DEFAULTS: dict[str, Any] = {"tp": 1, "pp": 1, "ep": 1, "attention_dp": 1}
_SOLVED = "decode_workers"


def _choice(value: Any) -> Any:
    """A JSON-able Optuna choice: plain str for enums."""
    return value.value if isinstance(value, DType) else value


class _Point(SimpleNamespace):
    """A partially assigned point for the walk; rules read it like a flat config."""


@dataclass
class _Block:
    """The valid values of one worker shape and what each rule removed from its product."""

    valid: list[tuple[Any, ...]] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    example: dict[str, str] = field(default_factory=dict)


@dataclass
class _Stats:
    valid: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    example: dict[str, str] = field(default_factory=dict)


class InferenceSpace:
    """The serving knobs of one job, the rules that make a point launchable, and views of the
    valid points for exhaustive evaluation (``enumerate``) and for Optuna (``to_optuna``)."""

    def __init__(
        self,
        model: ModelSpec,
        cluster: ClusterSpec,
        workload: InferenceWorkload,
        space: dict[str, list[Any]] | None = None,
    ) -> None:
        self.model, self.cluster, self.workload = model, cluster, workload
        self.context = RuleContext(model, cluster, workload)
        knobs = default_knobs(model, cluster, workload)
        for knob, values in (space or {}).items():
            knobs[knob] = _normalise(knob, values)
        self.knobs: dict[str, list[Any]] = knobs
        self.rules: tuple[Rule, ...] = tuple(sorted(RULES, key=rule_depth))
        self._rules_at: list[list[Rule]] = [[] for _ in KNOB_ORDER]
        for rule in self.rules:
            self._rules_at[rule_depth(rule)].append(rule)
        self._domains = {mode: self._mode_domains(mode) for mode in MODES}
        self._stats: _Stats | None = None
        self._blocks: dict[tuple[Any, ...], _Block] = {}

    def _mode_domains(self, mode: str) -> list[list[Any]]:
        """Per knob (KNOB_ORDER), the values walked for points of ``mode``."""
        out: list[list[Any]] = []
        for name in KNOB_ORDER:
            if name == "mode":
                out.append([mode] if mode in self.knobs["mode"] else [])
            elif mode == "aggregated" and name in POOL_KNOBS:
                out.append([None])
            elif mode == "disaggregated" and name in AGGREGATED_FIELDS:
                out.append([_DEFAULTS.get(name)])
            else:
                out.append(self.knobs[name])
        return out

    # -- single points --------------------------------------------------------------------------

    def violations(self, config: InferenceConfig) -> list[str]:
        """Every rule ``config`` breaks, as ``"rule_name: what to change"``; [] = valid."""
        point = _Point(**config.to_flat())
        out = []
        for rule in self.rules:
            msg = rule.check(self.context, point)
            if msg is not None:
                out.append(f"{rule.name}: {msg}")
        return out

    def is_valid(self, config: InferenceConfig) -> bool:
        return not self.violations(config)

    # -- the walk -------------------------------------------------------------------------------

    def _candidates(self, point: _Point, depth: int) -> list[Any]:
        """Values of knob ``depth`` to try under ``point``; the decode worker count is solved."""
        if depth == 0:
            return [m for m in MODES if m in self.knobs["mode"]]
        domain = self._domains[point.mode][depth]
        if KNOB_ORDER[depth] != _SOLVED or point.mode != "disaggregated":
            return domain
        pre = point.prefill_tp * point.prefill_pp * point.prefill_attention_dp
        rest = self.cluster.num_gpus - pre * point.prefill_workers
        size = point.decode_tp * point.decode_pp * point.decode_attention_dp
        if rest <= 0 or rest % size or rest // size not in domain:
            return []
        return [rest // size]

    def _block(self, point: _Point, depth: int) -> _Block:
        """The valid values of the worker shape starting at ``depth`` (4 knobs), computed once
        per (mode, backend, weight_dtype): the shape rules read nothing else."""
        key = (depth, point.mode, point.backend, point.weight_dtype)
        if key not in self._blocks:
            block = _Block()
            self._fill_block(_Point(**vars(point)), depth, depth + len(SHAPE_KNOBS), block)
            self._blocks[key] = block
        return self._blocks[key]

    def _fill_block(self, point: _Point, depth: int, stop: int, block: _Block) -> None:
        domains = self._domains[point.mode]
        inner = math.prod(len(d) for d in domains[depth + 1 : stop])
        for value in domains[depth]:
            setattr(point, KNOB_ORDER[depth], value)
            failed = next((r for r in self._rules_at[depth] if r.check(self.context, point)), None)
            if failed is not None:
                block.rejected[failed.name] += inner
                block.example.setdefault(failed.name, failed.check(self.context, point) or "")
            elif depth + 1 == stop:
                block.valid.append(tuple(getattr(point, k) for k in KNOB_ORDER[stop - 4 : stop]))
            else:
                self._fill_block(point, depth + 1, stop, block)

    def _walk(self, point: _Point, depth: int) -> Iterator[None]:
        if depth in BLOCK_STARTS:
            after = depth + len(SHAPE_KNOBS)
            for values in self._block(point, depth).valid:
                for name, value in zip(KNOB_ORDER[depth:after], values, strict=True):
                    setattr(point, name, value)
                yield from self._walk(point, after)
            return
        name, rules, ctx = KNOB_ORDER[depth], self._rules_at[depth], self.context
        for value in self._candidates(point, depth):
            setattr(point, name, value)
            if any(r.check(ctx, point) is not None for r in rules):
                continue
            if depth + 1 == len(KNOB_ORDER):
                yield
            else:
                yield from self._walk(point, depth + 1)

    def _inner(self, mode: str, depth: int) -> int:
        return math.prod(len(d) for d in self._domains[mode][depth + 1 :])

    def _count_block(self, point: _Point, depth: int, stats: _Stats) -> int:
        block, after = self._block(point, depth), depth + len(SHAPE_KNOBS)
        outside = self._inner(point.mode, after - 1)
        for rule, n in block.rejected.items():
            stats.rejected[rule] += n * outside
            stats.example.setdefault(rule, block.example[rule])
        valid = 0
        for values in block.valid:
            for name, value in zip(KNOB_ORDER[depth:after], values, strict=True):
                setattr(point, name, value)
            valid += self._count(point, after, stats)
        return valid

    def _count(self, point: _Point, depth: int, stats: _Stats) -> int:
        """Valid completions of ``point``; charges each rejected sub-product to the first rule
        that fails (the unsolvable decode worker counts to ``pools_fill_cluster``)."""
        if depth == len(KNOB_ORDER):
            return 1
        if depth in BLOCK_STARTS:
            return self._count_block(point, depth, stats)
        name, rules, ctx = KNOB_ORDER[depth], self._rules_at[depth], self.context
        candidates = self._candidates(point, depth)
        if depth and name == _SOLVED and point.mode == "disaggregated":
            missing = len(self._domains[point.mode][depth]) - len(candidates)
            stats.rejected["pools_fill_cluster"] += missing * self._inner(point.mode, depth)
        valid = 0
        for value in candidates:
            setattr(point, name, value)
            inner = self._inner(point.mode, depth)
            for rule in rules:
                msg = rule.check(ctx, point)
                if msg is not None:
                    stats.rejected[rule.name] += inner
                    stats.example.setdefault(rule.name, msg)
                    break
            else:
                valid += self._count(point, depth + 1, stats)
        return valid

    def _full_stats(self) -> _Stats:
        if self._stats is None:
            stats = _Stats()
            stats.valid = self._count(_Point(), 0, stats)
            self._stats = stats
        return self._stats

    # -- the valid set --------------------------------------------------------------------------

    def total_points(self) -> int:
        """Points of the mode-dependent product of the knobs, valid or not."""
        return sum(math.prod(len(d) for d in self._domains[m]) for m in self.knobs["mode"])

    def enumerate(self, limit: int | None = None) -> Iterator[InferenceConfig]:
        """Valid points in a deterministic order (knobs in KNOB_ORDER), lazily."""
        point = _Point()
        for emitted, _ in enumerate(self._walk(point, 0)):
            if limit is not None and emitted >= limit:
                return
            yield InferenceConfig.from_flat(dict(vars(point)))

    def count_valid(self, cap: int | None = None) -> int:
        """Number of valid points; with ``cap``, stops counting once ``cap`` is reached."""
        if cap is None or self._stats is not None:
            total = self._full_stats().valid
            return total if cap is None else min(total, cap)
        count = 0
        for _ in self._walk(_Point(), 0):
            count += 1
            if count >= cap:
                return cap
        return count

    def rejection_counts(self) -> dict[str, int]:
        """Rule name -> points removed (each charged to the first rule it breaks), most first."""
        return dict(self._full_stats().rejected.most_common())

    def explain_empty(self) -> str:
        """Why the space has no valid point: the rule that removed the most, with its fix."""
        total, valid = self.total_points(), self.count_valid()
        if valid:
            return f"the space has {valid} valid configurations out of {total}"
        counts = self.rejection_counts()
        if not counts:
            return "the space is empty: some knob has no value"
        top, removed = next(iter(counts.items()))
        example = self._full_stats().example.get(top, "no value of the solved knob fits")
        lines = [
            f"no valid inference configuration among the {total} points of the space; "
            f"{top} removed the most ({removed}): {example}"
        ]
        others = [f"{rule} ({n})" for rule, n in counts.items() if rule != top]
        if others:
            lines.append(f"other rules that removed points: {', '.join(others)}")
        return "\n".join(lines)

    # -- Optuna ---------------------------------------------------------------------------------

    def to_optuna(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """A CategoricalDistribution per knob with more than one value; the decode worker count
        is left out (``decode`` solves it) and single-value knobs are restored by ``decode``."""
        return {
            k: optuna.distributions.CategoricalDistribution([_choice(v) for v in values])
            for k, values in self.knobs.items()
            if len(values) > 1 and k != _SOLVED
        }

    def fixed(self) -> dict[str, Any]:
        """Knobs with a single value, which Optuna does not see."""
        return {k: v[0] for k, v in self.knobs.items() if len(v) == 1 and k != _SOLVED}

    def decode(self, params: dict[str, Any]) -> InferenceConfig:
        """Optuna params plus the fixed knobs -> an InferenceConfig (the other mode's knobs are
        dropped; the decode worker count fills what the prefill pool leaves of the cluster)."""
        unknown = sorted(set(params) - set(self.knobs))
        if unknown:
            raise ValueError(f"unknown inference knob(s) {', '.join(unknown)} in params")
        flat = {**self.fixed(), **params}
        if flat.get("mode") == "disaggregated" and flat.get(_SOLVED) is None:
            pre = flat["prefill_tp"] * flat["prefill_pp"] * flat["prefill_attention_dp"]
            size = flat["decode_tp"] * flat["decode_pp"] * flat["decode_attention_dp"]
            rest = self.cluster.num_gpus - pre * flat["prefill_workers"]
            flat[_SOLVED] = max(1, rest // size)
        return InferenceConfig.from_flat(flat)

    def encode(self, config: InferenceConfig) -> dict[str, Any]:
        """Optuna params of ``config`` (the inverse of ``decode`` for its mode's knobs)."""
        flat = config.to_flat()
        return {k: _choice(flat[k]) for k in self.to_optuna() if flat.get(k) is not None}


def _normalise(knob: str, values: list[Any]) -> list[Any]:
    """User values coerced to the knob's type, duplicates dropped."""
    if knob not in INFERENCE_KNOBS:
        coerce_knob_value(knob, None)  # raises with the list of knobs
    if not values:
        raise ValueError(f"space.{knob} is empty; give at least one value")
    out: list[Any] = []
    for v in values:
        coerced = None if v is None else coerce_knob_value(knob, v)
        if coerced not in out:
            out.append(coerced)
    return out
