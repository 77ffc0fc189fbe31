"""Scoring the training model against the published runs: errors per row, per group, ranking.

The compared figure is tokens/s per GPU (README trap 1: never the sources' TFLOP/s). The error
of a row is ``100 * (predicted - measured) / measured``; groups report the median and the 90th
percentile of its absolute value. A row whose configuration the model rejects (ValueError) is
listed as inexpressible with the model's reason.

Ranking: within each group of runs of one model on one GPU type at one sequence length from
one source, the Spearman rank correlation between predicted and measured throughput, and
whether the run paretune would pick (the highest predicted throughput among those estimated to
fit) is the measured best.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass

from cost_models.accuracy.rows import InexpressibleRow
from cost_models.accuracy.rows import ReferenceRow
from cost_models.accuracy.rows import percentile
from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.training import estimate_training

CalibrationFor = Callable[[str], Calibration]  # GPU generation -> constants

# Source groups that republish one benchmark suite (a release or a table of the same paper) are
# left out together in the leave-one-source-out score: leaving out one Megatron-Bridge release
# while its siblings, which repeat the same recipes, stay in would measure nothing.
SOURCE_FAMILIES = (
    "nvidia_megatron-bridge",
    "megatron_sc21",
    "megatron_2020",
    "nvidia_megatron-lm",
)


def source_family(source_group: str) -> str:
    """The source a group belongs to, for leave-one-source-out."""
    for family in SOURCE_FAMILIES:
        if source_group.startswith(family):
            return family
    return source_group


@dataclass(frozen=True)
class RowResult:
    row: ReferenceRow
    predicted_tokens_per_s_per_gpu: float
    fits: bool

    @property
    def error_pct(self) -> float:
        """Signed error of the prediction, percent of the measurement."""
        measured = self.row.measured_tokens_per_s_per_gpu
        return 100.0 * (self.predicted_tokens_per_s_per_gpu - measured) / measured


@dataclass(frozen=True)
class GroupStats:
    name: str
    n: int
    median_ape: float
    p90_ape: float
    median_error: float  # signed: > 0 means the model is optimistic


def score_rows(
    rows: Iterable[ReferenceRow], calibration_for: CalibrationFor = load_calibration
) -> tuple[list[RowResult], list[InexpressibleRow]]:
    """Predict every row; rows the model rejects come back as inexpressible."""
    results: list[RowResult] = []
    rejected: list[InexpressibleRow] = []
    for row in rows:
        cal = calibration_for(row.cluster.gpu.generation)
        try:
            est = estimate_training(
                row.model, row.cluster, row.workload, row.config, cal, row.framework
            )
        except ValueError as exc:
            reason = f"the model rejects the configuration: {exc}"
            rejected.append(InexpressibleRow(row.row_id, row.source_group, row.model_name, reason))
            continue
        results.append(RowResult(row, est.tokens_per_s_per_gpu, est.fits))
    return results, rejected


def group_stats(name: str, results: list[RowResult]) -> GroupStats:
    errors = [r.error_pct for r in results]
    ape = [abs(e) for e in errors]
    return GroupStats(
        name=name,
        n=len(results),
        median_ape=statistics.median(ape),
        p90_ape=percentile(ape, 90),
        median_error=statistics.median(errors),
    )


def stats_by(results: list[RowResult], key: Callable[[RowResult], str]) -> list[GroupStats]:
    """Statistics per value of ``key``, sorted by name."""
    groups: dict[str, list[RowResult]] = defaultdict(list)
    for r in results:
        groups[key(r)].append(r)
    return [group_stats(name, rs) for name, rs in sorted(groups.items())]


def _ranks(values: list[float]) -> list[float]:
    """Ranks (1-based, ties averaged)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman rank correlation of two equally long lists (0 when either is constant)."""
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else 0.0


@dataclass(frozen=True)
class RankingGroup:
    name: str
    n: int
    spearman: float | None  # None below 3 distinct runs
    pick_is_best: bool


def ranking(results: list[RowResult], min_rows: int = 2) -> list[RankingGroup]:
    """Rank agreement within each (source group, model, GPU type, sequence length) with
    ``min_rows`` runs or more: the knobs (and GPU count) vary, the workload does not."""
    groups: dict[str, list[RowResult]] = defaultdict(list)
    for r in results:
        row = r.row
        key = f"{row.source_group} / {row.model_name} / {row.gpu_type} / s={row.workload.seq_len}"
        groups[key].append(r)
    out = []
    for name, rs in sorted(groups.items()):
        if len(rs) < min_rows:
            continue
        measured = [r.row.measured_tokens_per_s_per_gpu for r in rs]
        predicted = [r.predicted_tokens_per_s_per_gpu for r in rs]
        fitting = [r for r in rs if r.fits] or rs
        pick = max(fitting, key=lambda r: r.predicted_tokens_per_s_per_gpu)
        best = max(measured)
        rho = spearman(predicted, measured) if len(rs) >= 3 else None
        out.append(RankingGroup(name, len(rs), rho, pick.row.measured_tokens_per_s_per_gpu == best))
    return out
