"""A batch of training configurations in columnar form: one numpy array per knob.

The vectorised model reads each knob once per batch as an array instead of once per
configuration as an attribute, which is what lets numpy evaluate tens of thousands of
configurations in one pass. Categorical knobs (sharding, recompute, dtype) are stored as
integer codes into the value tuples below, so comparisons are integer compares.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import get_args

import numpy as np
import numpy.typing as npt

from search_spaces.config import TrainingConfig
from search_spaces.specs import DType

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SHARDINGS: tuple[str, ...] = get_args(TrainingConfig.model_fields["sharding"].annotation)
RECOMPUTES: tuple[str, ...] = get_args(TrainingConfig.model_fields["recompute"].annotation)
DTYPES: tuple[DType, ...] = tuple(DType)
INT_KNOBS = ("tp", "pp", "cp", "ep", "vpp", "micro_batch_size")
CATEGORIES: dict[str, tuple[Any, ...]] = {
    "sharding": SHARDINGS,
    "recompute": RECOMPUTES,
    "dtype": DTYPES,
}

_CODES: dict[str, dict[Any, int]] = {
    knob: {v: i for i, v in enumerate(values)} for knob, values in CATEGORIES.items()
}


def code_of(knob: str, value: Any) -> int:
    """The integer code of a categorical knob's value (``code_of("recompute", "full")``)."""
    return _CODES[knob][value]


def _encode(knob: str, values: Any) -> IntArray:
    """Names (or codes) of a categorical knob as codes; an unknown name is a clear error."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        codes = arr.astype(np.int64)
        bad = (codes < 0) | (codes >= len(CATEGORIES[knob]))
        if bad.any():
            raise ValueError(
                f"{knob} code {int(codes[bad][0])} is out of range; give names from "
                f"{', '.join(str(v) for v in CATEGORIES[knob])} "
                f"or codes 0..{len(CATEGORIES[knob]) - 1}"
            )
        return codes
    table = _CODES[knob]
    out = np.empty(arr.shape, dtype=np.int64)
    for i, value in enumerate(arr.tolist()):
        key = DType(value) if knob == "dtype" and value in DType.__members__ else value
        if key not in table:
            raise ValueError(
                f"{knob}={value!r} is not a known value; use one of: "
                f"{', '.join(str(v) for v in CATEGORIES[knob])}"
            )
        out[i] = table[key]
    return out


@dataclass(frozen=True)
class TrainingBatch:
    """Knob arrays of ``n`` training configurations (row i is one ``TrainingConfig``)."""

    tp: IntArray
    pp: IntArray
    cp: IntArray
    ep: IntArray
    vpp: IntArray
    micro_batch_size: IntArray
    sharding: IntArray  # codes into SHARDINGS
    recompute: IntArray  # codes into RECOMPUTES
    sequence_parallel: BoolArray
    dtype: IntArray  # codes into DTYPES

    def __post_init__(self) -> None:
        n = len(self.tp)
        for f in fields(self):
            arr = getattr(self, f.name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1:
                raise ValueError(f"{f.name} must be a 1-D numpy array; use TrainingBatch.of()")
            if len(arr) != n:
                raise ValueError(
                    f"{f.name} has {len(arr)} values but tp has {n}; give every knob one value "
                    "per configuration"
                )
        for knob in INT_KNOBS:
            arr = getattr(self, knob)
            if n and int(arr.min()) < 1:
                raise ValueError(f"{knob} must be >= 1 in every configuration (got {arr.min()})")

    def __len__(self) -> int:
        return len(self.tp)

    @classmethod
    def of(cls, **columns: Any) -> TrainingBatch:
        """From per-knob sequences; omitted knobs take ``TrainingConfig``'s defaults, and
        sequence_parallel defaults to ``tp > 1`` as it does there. Categorical knobs may be
        names (``"zero1"``, ``"fp8"``) or codes."""
        unknown = sorted(set(columns) - set(TrainingConfig.model_fields))
        if unknown:
            raise ValueError(
                f"unknown training knob(s) {', '.join(unknown)}; "
                f"knobs: {', '.join(TrainingConfig.model_fields)}"
            )
        sizes = {k: len(np.atleast_1d(v)) for k, v in columns.items()}
        n = max(sizes.values(), default=0)
        short = [k for k, size in sizes.items() if size not in (1, n)]
        if short:
            raise ValueError(
                f"{short[0]} has {sizes[short[0]]} values, others {n}; give every knob one "
                "value per configuration (or a single value for all)"
            )
        defaults = TrainingConfig()
        data: dict[str, Any] = {}
        for knob in TrainingConfig.model_fields:
            if knob == "sequence_parallel" and knob not in columns:
                continue
            raw = columns.get(knob, getattr(defaults, knob))
            arr = np.broadcast_to(np.atleast_1d(np.asarray(raw)), (n,))
            if knob in CATEGORIES:
                data[knob] = _encode(knob, arr)
            elif knob == "sequence_parallel":
                data[knob] = arr.astype(np.bool_)
            else:
                if arr.dtype.kind not in "iu":
                    raise ValueError(f"{knob} must hold integers (got {arr.dtype})")
                data[knob] = arr.astype(np.int64)
        if "sequence_parallel" not in data:
            data["sequence_parallel"] = data["tp"] > 1
        return cls(**data)

    @classmethod
    def from_configs(cls, configs: Sequence[TrainingConfig]) -> TrainingBatch:
        """Columns of ``configs`` (in order)."""

        def ints(get: Callable[[TrainingConfig], int]) -> IntArray:
            return np.fromiter((get(c) for c in configs), dtype=np.int64, count=len(configs))

        sharding, recompute, dtype = _CODES["sharding"], _CODES["recompute"], _CODES["dtype"]
        return cls(
            tp=ints(lambda c: c.tp),
            pp=ints(lambda c: c.pp),
            cp=ints(lambda c: c.cp),
            ep=ints(lambda c: c.ep),
            vpp=ints(lambda c: c.vpp),
            micro_batch_size=ints(lambda c: c.micro_batch_size),
            sharding=ints(lambda c: sharding[c.sharding]),
            recompute=ints(lambda c: recompute[c.recompute]),
            sequence_parallel=np.fromiter(
                (c.sequence_parallel for c in configs), dtype=np.bool_, count=len(configs)
            ),
            dtype=ints(lambda c: dtype[c.dtype]),
        )

    def config(self, i: int) -> TrainingConfig:
        """Row ``i`` as a ``TrainingConfig``."""
        return TrainingConfig(
            tp=int(self.tp[i]),
            pp=int(self.pp[i]),
            cp=int(self.cp[i]),
            ep=int(self.ep[i]),
            vpp=int(self.vpp[i]),
            micro_batch_size=int(self.micro_batch_size[i]),
            sharding=SHARDINGS[self.sharding[i]],
            recompute=RECOMPUTES[self.recompute[i]],
            sequence_parallel=bool(self.sequence_parallel[i]),
            dtype=DTYPES[self.dtype[i]],
        )

    def take(self, rows: IntArray | BoolArray) -> TrainingBatch:
        """The configurations at ``rows`` (indices or a mask)."""
        return TrainingBatch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


DENSE_CODES_MAX = 1 << 22  # distinct-row codes up to this use a table instead of a sort


CodeCache = dict[int, tuple[IntArray, IntArray, int]]


def _dense_codes(key: IntArray, cache: CodeCache | None = None) -> tuple[IntArray, int]:
    """``key`` renumbered 0..count-1 in value order, and count (its distinct values);
    ``cache`` remembers the renumbering of arrays used as keys again (the knob columns)."""
    if cache is not None:
        hit = cache.get(id(key))
        if hit is not None and hit[0] is key:
            return hit[1], hit[2]
        codes, count = _dense_codes(key)
        cache[id(key)] = (key, codes, count)  # holding ``key`` keeps its id from reuse
        return codes, count
    top = int(key.max())
    if top >= DENSE_CODES_MAX:
        values, inverse = np.unique(key, return_inverse=True)
        return inverse.astype(np.int64), len(values)
    present = np.zeros(top + 1, dtype=np.bool_)
    present[key] = True
    rank = np.cumsum(present) - 1
    return rank[key], int(rank[-1]) + 1


def unique_rows(*keys: IntArray, cache: CodeCache | None = None) -> tuple[IntArray, IntArray]:
    """The index of one row of each distinct combination of the non-negative integer
    ``keys``, and for every row the position of its combination among them.

    Knob values are small, so the combined code usually fits a presence table: O(n), no sort.
    """
    n = len(keys[0])
    code = np.zeros(n, dtype=np.int64)
    for key in keys:
        dense, count = _dense_codes(key, cache)
        code = code * count + dense
    top = int(code.max())
    if top < DENSE_CODES_MAX:
        row = np.full(top + 1, n, dtype=np.int64)
        row[code] = np.arange(n, dtype=np.int64)  # any row of a combination stands for it
        present = row < n
        position = np.cumsum(present) - 1
        return row[present], position[code]
    _, rows, inverse = np.unique(code, return_index=True, return_inverse=True)
    return rows.astype(np.int64), inverse.astype(np.int64)


def per_unique(
    fn: Callable[..., Sequence[float]],
    *keys: IntArray,
    outputs: int,
    cache: CodeCache | None = None,
) -> list[FloatArray]:
    """``fn`` of each distinct row of the integer ``keys``, spread back to every row.

    For terms that depend on a few discrete knobs only (stage parameters on tp/pp/ep, the
    links of a group on its size and stride), this reuses the scalar model's own function,
    called once per distinct combination instead of once per configuration.
    """
    if len(keys[0]) == 0:
        return [np.empty(0) for _ in range(outputs)]
    first, inverse = unique_rows(*keys, cache=cache)
    columns = [key[first].tolist() for key in keys]
    table = np.array([fn(*args) for args in zip(*columns, strict=True)], dtype=np.float64)
    by_output = np.ascontiguousarray(table.reshape(len(first), outputs).T)
    return [np.take(values, inverse) for values in by_output]
