"""Fit the named efficiency constants on the published runs and store them as data.

``python -m cost_models.accuracy.fit`` refits every fitted constant on all expressible rows of
``../shared/reference/training_measured.csv`` and rewrites ``cost_models/calibration.yaml``.

What is fitted, and why only this: a constant per GPU generation where the hardware, not the
model, decides it (the share of the tensor-core peak that large GEMMs and FlashAttention reach
per dtype, and how much of the TP communication the generation's frameworks leave exposed),
and a few shared constants for kernel behaviour that is the same on every GPU (per-tile GEMM
overhead, softmax work per attention pair, elementwise HBM passes, MoE routing overhead,
exposed expert all-to-all). A per-generation constant is fitted only where at least
``MIN_ROWS`` rows exercise it; elsewhere the ``default`` entry (the median of the fitted
generations) applies. Everything else (link efficiencies, latencies, memory margins) is fixed
physics, not fitted. There are no per-model, per-row or per-source corrections.

The fit minimises a robust (soft-L1) loss of ``log(predicted / measured)`` tokens/s per GPU
with ``scipy.optimize.least_squares``, each row weighted ``n_group ** -0.5`` so that every
source family weighs about the same whatever its row count. It always starts from
``INITIAL``, never from the stored values, so the leave-one-source-out refits in the report
see nothing of the source they leave out.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cost_models.accuracy.rows import ReferenceRow
from cost_models.accuracy.rows import load_reference
from cost_models.accuracy.training import score_rows
from cost_models.accuracy.training import source_family
from cost_models.calibration import CALIBRATION_FILE
from cost_models.calibration import DEFAULT_ENTRY
from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from search_spaces.specs import DType

MIN_ROWS = 4
ROBUST_SCALE = 0.05  # soft-L1 switches from squared to absolute log error beyond ~5%

# name -> (initial value, lower bound, upper bound)
PER_GENERATION: dict[str, tuple[float, float, float]] = {
    "gemm_efficiency_bf16": (0.7, 0.2, 1.0),
    "gemm_efficiency_fp8": (0.5, 0.1, 1.0),
    "gemm_efficiency_fp4": (0.4, 0.05, 1.0),
    "attention_efficiency": (0.4, 0.05, 1.0),
    "tp_comm_exposed_fraction": (0.5, 0.1, 1.0),
}
SHARED: dict[str, tuple[float, float, float]] = {
    "gemm_tile_overhead_k": (64.0, 0.0, 1024.0),
    "attention_softmax_flops_per_pair": (256.0, 0.0, 4096.0),
    "attention_tile_overhead_keys": (256.0, 0.0, 8192.0),
    "unfused_softmax_bytes_per_pair": (24.0, 0.0, 400.0),
    "elementwise_passes": (20.0, 0.0, 200.0),
    "moe_expert_overhead_s": (1e-4, 0.0, 0.01),
    "ep_comm_exposed_fraction": (0.5, 0.1, 1.0),
    "nvlink_efficiency": (0.75, 0.5, 0.95),
    "scaleout_efficiency": (0.75, 0.5, 0.95),
}


def _uses(name: str, row: ReferenceRow) -> bool:
    """Whether ``row``'s prediction depends on constant ``name`` to first order."""
    cfg, fw = row.config, row.framework
    return {
        "gemm_efficiency_bf16": cfg.dtype in (DType.bf16, DType.fp16),
        "gemm_efficiency_fp8": cfg.dtype == DType.fp8,
        "gemm_efficiency_fp4": cfg.dtype == DType.fp4,
        "attention_efficiency": fw.flash_attention,
        "tp_comm_exposed_fraction": cfg.tp > 1 and fw.overlap_tp_comm,
        "unfused_softmax_bytes_per_pair": not fw.flash_attention,
        "moe_expert_overhead_s": row.model.is_moe,
        "ep_comm_exposed_fraction": row.model.is_moe and cfg.ep > 1,
        "attention_softmax_flops_per_pair": fw.flash_attention,
        "attention_tile_overhead_keys": fw.flash_attention,
        "nvlink_efficiency": cfg.tp > 1 or cfg.ep > 1 or cfg.cp > 1,
    }.get(name, True)


@dataclass(frozen=True)
class Parameter:
    name: str
    generation: str  # DEFAULT_ENTRY for shared constants
    initial: float
    lower: float
    upper: float


def fitted_parameters(rows: list[ReferenceRow]) -> list[Parameter]:
    """The constants the rows can determine (see the module docstring)."""
    params = [
        Parameter(name, DEFAULT_ENTRY, *bounds)
        for name, bounds in SHARED.items()
        if sum(_uses(name, r) for r in rows) >= MIN_ROWS
    ]
    generations = sorted({r.cluster.gpu.generation for r in rows})
    for gen in generations:
        for name, bounds in PER_GENERATION.items():
            used = sum(_uses(name, r) for r in rows if r.cluster.gpu.generation == gen)
            if used >= MIN_ROWS:
                params.append(Parameter(name, gen, *bounds))
    return params


def _fixed_default() -> dict[str, Any]:
    """The non-fitted constants, as stored."""
    fixed = load_calibration(DEFAULT_ENTRY).model_dump(exclude={"generation"})
    return {k: v for k, v in fixed.items() if k not in SHARED and k not in PER_GENERATION}


def entries_from(params: list[Parameter], values: list[float]) -> dict[str, dict[str, float]]:
    """Calibration entries: ``default`` with every constant, generations with their own."""
    default: dict[str, float] = {**_fixed_default()}
    default.update({n: init for n, (init, _, _) in SHARED.items()})
    entries: dict[str, dict[str, float]] = {}
    for p, v in zip(params, values, strict=True):
        if p.generation == DEFAULT_ENTRY:
            default[p.name] = v
        else:
            entries.setdefault(p.generation, {})[p.name] = v
    for name, (init, _, _) in PER_GENERATION.items():  # default = median of fitted gens
        fitted = sorted(e[name] for e in entries.values() if name in e)
        default[name] = fitted[len(fitted) // 2] if fitted else init
    return {DEFAULT_ENTRY: default, **entries}


def calibration_lookup(entries: dict[str, dict[str, float]]) -> Callable[[str], Calibration]:
    """A generation -> Calibration function over ``entries`` (unknown ones get the default)."""
    cache: dict[str, Calibration] = {}

    def lookup(generation: str) -> Calibration:
        if generation not in cache:
            merged = {**entries[DEFAULT_ENTRY], **entries.get(generation, {})}
            cache[generation] = Calibration(generation=generation, **merged)
        return cache[generation]

    return lookup


def _weights(rows: list[ReferenceRow]) -> list[float]:
    counts = Counter(source_family(r.source_group) for r in rows)
    return [counts[source_family(r.source_group)] ** -0.5 for r in rows]


def _residuals(
    rows: list[ReferenceRow], params: list[Parameter], weights: list[float], x: Any
) -> list[float]:
    lookup = calibration_lookup(entries_from(params, [float(v) for v in x]))
    results, rejected = score_rows(rows, lookup)
    if rejected:
        raise ValueError(f"{len(rejected)} rows are rejected by the model; drop them first")
    return [
        w * math.log(r.predicted_tokens_per_s_per_gpu / r.row.measured_tokens_per_s_per_gpu)
        for w, r in zip(weights, results, strict=True)
    ]


def _sparsity(rows: list[ReferenceRow], params: list[Parameter]) -> Any:
    """Which rows each constant can move: lets the solver perturb unrelated ones together."""
    import numpy as np

    out = np.zeros((len(rows), len(params)), dtype=bool)
    for j, p in enumerate(params):
        for i, r in enumerate(rows):
            gen_ok = p.generation in (DEFAULT_ENTRY, r.cluster.gpu.generation)
            out[i, j] = gen_ok and _uses(p.name, r)
    return out


def fit_constants(rows: list[ReferenceRow], max_evals: int = 60) -> dict[str, dict[str, float]]:
    """Least-squares fit of the constants on ``rows``; returns calibration entries."""
    import numpy as np
    from scipy.optimize import least_squares

    usable, _ = score_rows(rows)
    rows = [r.row for r in usable]
    params = fitted_parameters(rows)
    weights = _weights(rows)
    x0 = np.array([p.initial for p in params])
    lower = np.array([p.lower for p in params])
    upper = np.array([p.upper for p in params])
    result = least_squares(
        lambda x: np.asarray(_residuals(rows, params, weights, x)),
        x0,
        bounds=(lower, upper),
        x_scale=np.maximum(np.abs(x0), 1e-3),
        loss="soft_l1",
        f_scale=ROBUST_SCALE,
        jac_sparsity=_sparsity(rows, params),
        max_nfev=max_evals,
        xtol=1e-4,
        ftol=1e-5,
    )
    return entries_from(params, [float(v) for v in result.x])


def main(argv: list[str] | None = None) -> None:
    from cost_models.accuracy.calibration_file import write_calibration
    from cost_models.accuracy.report import default_reference_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--max-evals", type=int, default=60)
    args = parser.parse_args(argv)
    rows, _ = load_reference(args.reference_dir or default_reference_dir())
    start = time.perf_counter()
    entries = fit_constants(rows, args.max_evals)
    write_calibration(entries, args.out, n_rows=len(rows))
    print(f"fitted on {len(rows)} rows in {time.perf_counter() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
