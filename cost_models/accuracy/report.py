"""``python -m cost_models.accuracy.report``: regenerate ``docs/accuracy.md``.

The report scores the training model, with the stored constants, on every published run in
``training_measured.csv`` it can express: per source group the row count and the median and
90th-percentile absolute error of tokens/s per GPU, the leave-one-source-out score, the rank
agreement within groups of runs, what is known about memory, the constants, and every row left
out with its reason. If the inference accuracy module is present, its sections follow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from cost_models.accuracy.rows import InexpressibleRow
from cost_models.accuracy.rows import load_reference
from cost_models.accuracy.rows import percentile
from cost_models.accuracy.training import GroupStats
from cost_models.accuracy.training import RowResult
from cost_models.accuracy.training import group_stats
from cost_models.accuracy.training import ranking
from cost_models.accuracy.training import score_rows
from cost_models.accuracy.training import stats_by
from cost_models.calibration import CALIBRATION_FILE

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_DIR / "docs" / "accuracy.md"
TARGET_MEDIAN, TARGET_P90, TARGET_LOSO = 10.0, 25.0, 15.0  # percent (issue 3)
MIN_GROUP_ROWS = 5  # the per-group target applies to groups of at least this many rows
COMMAND = "python -m cost_models.accuracy.report"


def default_reference_dir() -> Path:
    """``$PARETUNE_SHARED_DIR/reference``, else ``../shared/reference`` beside the repo."""
    shared = os.environ.get("PARETUNE_SHARED_DIR")
    return (Path(shared) if shared else REPO_DIR.parent / "shared") / "reference"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{x:.1f}%"


def _stats_row(s: GroupStats) -> list[str]:
    return [s.name, str(s.n), _pct(s.median_ape), _pct(s.p90_ape), f"{s.median_error:+.1f}%"]


STATS_HEADERS = ["group", "rows", "median abs err", "p90 abs err", "median signed err"]


def _loso_stats(loso: dict[str, list[RowResult]]) -> tuple[list[list[str]], list[float]]:
    rows, all_ape = [], []
    for family, results in sorted(loso.items()):
        if not results:
            continue
        s = group_stats(family, results)
        all_ape += [abs(r.error_pct) for r in results]
        rows.append(_stats_row(s))
    return rows, all_ape


def _summary(results: list[RowResult], loso_ape: list[float] | None) -> str:
    overall = group_stats("all expressible rows", results)
    groups = [s for s in stats_by(results, lambda r: r.row.source_group) if s.n >= MIN_GROUP_ROWS]
    worst = max(groups, key=lambda s: s.median_ape)
    checks = [
        ["overall median abs err", _pct(overall.median_ape), f"<= {TARGET_MEDIAN:.0f}%"],
        ["overall p90 abs err", _pct(overall.p90_ape), f"<= {TARGET_P90:.0f}%"],
        [
            f"worst group median (groups of {MIN_GROUP_ROWS}+ rows)",
            f"{_pct(worst.median_ape)} ({worst.name})",
            f"<= {TARGET_MEDIAN:.0f}%",
        ],
        [
            f"groups of {MIN_GROUP_ROWS}+ rows within the median target",
            f"{sum(s.median_ape <= TARGET_MEDIAN for s in groups)} of {len(groups)}",
            "all",
        ],
    ]
    if loso_ape:
        med = statistics.median(loso_ape)
        checks.append(["leave-one-source-out median abs err", _pct(med), f"<= {TARGET_LOSO:.0f}%"])
        checks.append(["leave-one-source-out p90 abs err", _pct(percentile(loso_ape, 90)), "-"])
    return table(["figure", "value", "target"], checks)


def _splits(results: list[RowResult]) -> str:
    def kind(r: RowResult) -> str:
        measured = "derived from TFLOP/s" if r.row.derived_from_tflops else "measured tokens/s"
        arch = "MoE" if r.row.model.is_moe else "dense"
        return f"{arch}, {measured}"

    by_kind = stats_by(results, kind)
    by_gen = stats_by(results, lambda r: f"{r.row.cluster.gpu.generation}")
    return "\n\n".join(
        [
            table(STATS_HEADERS, [_stats_row(s) for s in by_kind]),
            table(STATS_HEADERS, [_stats_row(s) for s in by_gen]),
        ]
    )


def _ranking_section(results: list[RowResult]) -> str:
    groups = ranking(results)
    rhos = [g.spearman for g in groups if g.spearman is not None]
    picks = sum(g.pick_is_best for g in groups)
    head = (
        f"{len(groups)} groups of 2+ runs of one model on one GPU type at one sequence length "
        "from one source (the knobs and the GPU count vary). "
        f"Median Spearman rank correlation over the {len(rhos)} groups of 3+ runs: "
        f"**{statistics.median(rhos):.2f}** (target >= 0.8); the run paretune would pick (highest "
        f"predicted tokens/s among those estimated to fit) is the measured best in "
        f"**{picks} of {len(groups)}** groups (target >= 80%)."
    )
    rows = [
        [
            g.name,
            str(g.n),
            "-" if g.spearman is None else f"{g.spearman:.2f}",
            "yes" if g.pick_is_best else "no",
        ]
        for g in groups
    ]
    return head + "\n\n" + table(["group", "runs", "Spearman", "pick is best"], rows)


def _memory_section(results: list[RowResult]) -> str:
    fitting = sum(r.fits for r in results)
    return (
        "No row of `training_measured.csv` publishes a memory figure (`memory_gib` is blank "
        "everywhere), so memory error cannot be measured. As a sanity check, runs that happened "
        f"must fit: **{fitting} of {len(results)}** expressible runs are estimated to fit their "
        "GPU (rows whose recompute mode is not published are assumed to run without recompute, "
        "which overstates their activations)."
    )


def _left_out_section(left_out: list[InexpressibleRow]) -> str:
    rows = [[x.row_id, x.source_group, x.model_name, x.reason] for x in left_out]
    return f"**{len(left_out)}** rows cannot be expressed and are not scored:\n\n" + table(
        ["row", "source group", "model", "reason"], rows
    )


def _constants_section() -> str:
    lines = [
        ln for ln in CALIBRATION_FILE.read_text().splitlines() if ln and not ln.startswith("#")
    ]
    return (
        "From `cost_models/calibration.yaml` (refit: `python -m cost_models.accuracy.fit`):"
        "\n\n```yaml\n" + "\n".join(lines) + "\n```"
    )


MODEL_TEXT = """\
Per GPU of an average pipeline stage, micro-batch by micro-batch (`cost_models/training.py`):

- **compute** (`compute.py`, `kernels.py`): every GEMM at its local shape (tile padding, wave
  quantisation over the SMs, per-tile K overhead, HBM roofline; backward as input- and
  weight-gradient GEMMs of their own shapes), fp8/fp4 only on the layer GEMMs plus their casts;
  FlashAttention pairs with causal skipping, 2 forward and 5 backward matmuls and softmax work
  per pair (or unfused attention over stored scores); norms/activations/residuals from HBM;
  MoE experts as grouped GEMMs at the per-expert token count, token permutation and a fixed
  dispatch cost per local expert; the LM head and loss; recompute per mode.
- **communication** (`training_comm.py`, `comm.py`): alpha-beta ring/tree collectives with the
  nccl-tests bus-bandwidth factors on NVLink inside the NVLink domain and the NICs across; TP
  all-reduce or AG/RS on the critical path (a calibrated share when overlapped); CP ring
  exchange behind the attention; EP all-to-all across domains when EP spans them; PP sends
  and the 1F1B/interleaved bubble; DP reduce-scatter/all-reduce and gathers hidden behind the
  last backward / first forward as far as the buckets allow; ZeRO-3/FSDP gathers and
  reduce-scatters layer by layer (each paying its ring latency), prefetched one layer ahead.
  DeepSpeed's ZeRO-3 of 2021 (SC'21 Table 2) is a framework of its own (`plan.Framework`):
  its gathers reach one NIC per GPU, not NCCL's multi-rail rings, it gathers again for the
  recomputed forward, and it prefetches one weight matrix ahead, not one layer.
- **memory** (`memory.py`): weights, gradients and optimizer state per sharding mode,
  activations per recompute mode for GQA/SwiGLU/MoE split by TP/SP/CP times the in-flight
  micro-batches, a working margin; the largest term is reported."""


def _bounds_note() -> str:
    """Fitted constants that ended on a bound of their allowed range (a modelling limit)."""
    from cost_models.accuracy.fit import PER_GENERATION
    from cost_models.accuracy.fit import SHARED

    data = yaml.safe_load(CALIBRATION_FILE.read_text())
    hits = []
    for entry, constants in data.items():
        for name, value in constants.items():
            bounds = {**SHARED, **PER_GENERATION}.get(name)
            tolerance = 1e-3 * (bounds[2] - bounds[1]) if bounds else 0.0
            if bounds and any(abs(value - b) <= tolerance for b in bounds[1:]):
                hits.append(f"`{entry}.{name}` = {value:g}")
    if not hits:
        return "No fitted constant sits on a bound of its range."
    return (
        "On a bound of their allowed range (the data would push them further; the bounds are "
        "physical limits, e.g. no overlap hides more than 90% of a collective): "
        + ", ".join(hits)
        + "."
    )


def _inference_sections(reference_dir: Path) -> list[str]:
    """The inference engineer's sections, when their module exists."""
    try:
        module = importlib.import_module("cost_models.accuracy.inference")
    except ImportError:
        return []
    sections: Callable[[Path], list[str]] | None = getattr(
        module, "inference_report_sections", None
    )
    return list(sections(reference_dir)) if sections else []


def build_report(reference_dir: Path, loso: bool = True, workers: int = 2) -> str:
    """The markdown of ``docs/accuracy.md``."""
    from cost_models.accuracy.loso import leave_one_source_out

    rows, left_out = load_reference(reference_dir)
    results, rejected = score_rows(rows)
    left_out = left_out + rejected
    loso_results = leave_one_source_out([r.row for r in results], workers=workers) if loso else {}
    loso_rows, loso_ape = _loso_stats(loso_results)
    groups = stats_by(results, lambda r: r.row.source_group)
    parts = [
        "# Training cost model accuracy",
        f"Generated by `{COMMAND}` (or `make accuracy`) from `training_measured.csv`: "
        f"{len(rows) + len(left_out) - len(rejected)} published runs, {len(results)} expressed "
        f"and scored, {len(left_out)} left out (listed below). The compared figure is tokens/s "
        "per GPU (or step time, turned into it), never the sources' TFLOP/s. Error = "
        "(predicted - measured) / measured; positive means the model is optimistic.",
        "## What is modelled",
        MODEL_TEXT,
        "## Summary",
        _summary(results, loso_ape if loso else None),
        "## Per source group (in-sample: the constants were fitted on these rows)",
        table(STATS_HEADERS, [_stats_row(s) for s in groups]),
        "## Leave one source out",
        "Each source family (all Megatron-Bridge releases together, both SC'21 tables together, "
        "both 2020 tables together) is scored with constants refitted without it. A GPU "
        "generation seen only in the left-out source falls back to the default constants.",
        table(STATS_HEADERS, loso_rows) if loso else "(skipped: --no-loso)",
        "## By kind of row and by GPU generation",
        "Rows whose source publishes only TFLOP/s are turned into tokens/s with that source's "
        "own FLOPs formula (README trap 1); they are scored apart here.",
        _splits(results),
        "## Ranking within groups of runs",
        _ranking_section(results),
        "## Memory",
        _memory_section(results),
        "## Rows left out",
        _left_out_section(left_out),
        "## Constants",
        _constants_section(),
        _bounds_note(),
    ]
    parts += _inference_sections(reference_dir)
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-loso", action="store_true", help="skip the refits (faster)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    text = build_report(
        args.reference_dir or default_reference_dir(), not args.no_loso, args.workers
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
