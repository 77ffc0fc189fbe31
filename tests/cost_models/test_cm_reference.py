"""Accuracy against the published training runs in ../shared/reference (tokens/s per GPU).

The constants in calibration.yaml were fitted on these rows (`python -m
cost_models.accuracy.fit`), so the in-sample bounds guard the model and its calibration against
regressions; the leave-one-source-out test (slow: one refit per source) measures how the model
does on a source it has not seen. `python -m cost_models.accuracy.report` prints the same
figures into docs/accuracy.md.
"""

from __future__ import annotations

import statistics

import pytest

from cost_models.accuracy.loso import leave_one_source_out
from cost_models.accuracy.rows import load_reference
from cost_models.accuracy.rows import percentile
from cost_models.accuracy.training import ranking
from cost_models.accuracy.training import score_rows
from cost_models.accuracy.training import stats_by

MEDIAN_APE_MAX = 10.0  # percent, over all expressible rows (issue 3 target)
P90_APE_MAX = 25.0
GROUP_MEDIAN_APE_MAX = 10.0  # every source group of MIN_GROUP_ROWS rows or more
MIN_GROUP_ROWS = 5
LOSO_MEDIAN_APE_MAX = 15.0
# Known misses, with why; each keeps a bound of its own so that it cannot get worse unseen.
# (None today: SC'21 Table 2's ZeRO-3 rows, 16% before DeepSpeed's 2021 gathers were modelled,
# are within the target.)
KNOWN_MISSES: dict[str, float] = {}
MIN_PICK_SHARE = 0.8  # the run paretune picks is the measured best in 80% of groups
MIN_MEDIAN_SPEARMAN = 0.8


@pytest.fixture(scope="module")
def scored(reference_dir):
    rows, left_out = load_reference(reference_dir)
    results, rejected = score_rows(rows)
    assert not rejected, [r.reason for r in rejected]
    return results, left_out


def test_overall_tokens_per_s_per_gpu(scored):
    results, _ = scored
    ape = [abs(r.error_pct) for r in results]
    median, p90 = statistics.median(ape), percentile(ape, 90)
    print(f"\nall expressible rows: n={len(ape)} median APE {median:.1f}% p90 {p90:.1f}%")
    assert len(results) >= 300
    assert median <= MEDIAN_APE_MAX
    assert p90 <= P90_APE_MAX


def test_every_source_group_median(scored):
    results, _ = scored
    for s in stats_by(results, lambda r: r.row.source_group):
        print(f"  {s.name:40s} n={s.n:3d} median {s.median_ape:5.1f}% p90 {s.p90_ape:6.1f}%")
        if s.n < MIN_GROUP_ROWS:
            continue
        assert s.median_ape <= KNOWN_MISSES.get(s.name, GROUP_MEDIAN_APE_MAX), s.name


def test_ranking_within_groups_of_runs(scored):
    """Within a model/GPU/sequence group the model orders the runs as measured and picks the
    measured best (issue 3 targets)."""
    groups = ranking(scored[0])
    rhos = [g.spearman for g in groups if g.spearman is not None]
    picks = sum(g.pick_is_best for g in groups) / len(groups)
    print(f"\nranking: median Spearman {statistics.median(rhos):.2f}, picks {100 * picks:.0f}%")
    assert statistics.median(rhos) >= MIN_MEDIAN_SPEARMAN
    assert picks >= MIN_PICK_SHARE


def test_zero3_without_model_parallelism_stops_scaling(scored):
    """SC'21 Table 2: at a fixed global batch, DeepSpeed ZeRO-3's total throughput stays flat
    from 768 to 1536 GPUs (every GPU gathers the whole model each step), while PTD-P's grows
    nearly 2x. The model reproduces both within 15%."""
    by_id = {r.row.row_id: r for r in scored[0]}

    def totals(row_id):
        """(measured, predicted) tokens/s of the whole cluster."""
        r = by_id[row_id]
        gpus = r.row.cluster.num_gpus
        return r.row.measured_tokens_per_s_per_gpu * gpus, r.predicted_tokens_per_s_per_gpu * gpus

    growth = {}
    for small, large in (("T0540", "T0541"), ("T0546", "T0547")):  # ZeRO-3, PTD-P; 175B
        (m_small, p_small), (m_large, p_large) = totals(small), totals(large)
        growth[small] = p_large / p_small
        assert growth[small] == pytest.approx(m_large / m_small, rel=0.15), (small, large)
    assert growth["T0540"] < 1.2 and growth["T0546"] > 1.7


def test_moe_rows_are_held_to_a_bound(scored):
    """Qwen3-30B-A3B: the same configuration moves 1.5x between Megatron-Bridge releases
    (software), so no single physical model meets all releases; the median still must."""
    moe = [abs(r.error_pct) for r in scored[0] if r.row.model.is_moe]
    print(f"\nMoE rows: n={len(moe)} median APE {statistics.median(moe):.1f}%")
    assert len(moe) >= 30
    assert statistics.median(moe) <= 20.0


def test_every_row_is_scored_or_listed_with_a_reason(reference_dir, scored):
    results, left_out = scored
    with (reference_dir / "training_measured.csv").open() as fh:
        total = sum(1 for _ in fh) - 1
    assert len(results) + len(left_out) == total
    assert all(x.reason for x in left_out)
    assert len({r.row.row_id for r in results} | {x.row_id for x in left_out}) == total


def test_measured_runs_fit_in_memory(scored):
    """Runs that happened fit on their GPUs: rows whose recompute mode is published (MPT,
    Korthikanti et al.) come out as fitting, or over by a few percent at most."""
    from cost_models import estimate_training

    ratios = []
    for r in scored[0]:
        row = r.row
        if not row.source_group.startswith(("mosaicml", "korthikanti")):
            continue
        est = estimate_training(
            row.model, row.cluster, row.workload, row.config, framework=row.framework
        )
        ratios.append(est.memory_per_gpu_gib / est.memory_capacity_gib)
    fitting = sum(r <= 1.0 for r in ratios) / len(ratios)
    print(f"\nmeasured runs estimated to fit: {100 * fitting:.0f}%, worst {max(ratios):.2f}x")
    assert fitting >= 0.9
    assert max(ratios) < 1.1


@pytest.mark.slow
def test_leave_one_source_out(scored):
    """Refit without each source family and score it: the median stays within 15%."""
    loso = leave_one_source_out([r.row for r in scored[0]])
    ape = [abs(r.error_pct) for results in loso.values() for r in results]
    for family, results in sorted(loso.items()):
        errs = [abs(r.error_pct) for r in results]
        print(f"  {family:40s} n={len(errs):3d} median {statistics.median(errs):5.1f}%")
    print(f"leave-one-source-out: median {statistics.median(ape):.1f}%")
    assert statistics.median(ape) <= LOSO_MEDIAN_APE_MAX
