"""Leave-one-source-out: refit the constants without a source, then score that source.

The in-sample errors measure how well the model can describe the published runs; this
measures how it does on a source it has never seen, which is the situation of every user (and
of the measurements the project is judged on that are not in the repository). A source is a
family of source groups (``training.source_family``); the refit starts from the same initial
values as the stored fit, never from constants that saw the left-out rows.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from cost_models.accuracy.fit import calibration_lookup
from cost_models.accuracy.fit import fit_constants
from cost_models.accuracy.rows import ReferenceRow
from cost_models.accuracy.training import RowResult
from cost_models.accuracy.training import score_rows
from cost_models.accuracy.training import source_family


def _held_out(args: tuple[list[ReferenceRow], str, int]) -> tuple[str, list[RowResult]]:
    rows, family, max_evals = args
    train = [r for r in rows if source_family(r.source_group) != family]
    test = [r for r in rows if source_family(r.source_group) == family]
    lookup = calibration_lookup(fit_constants(train, max_evals))
    return family, score_rows(test, lookup)[0]


def leave_one_source_out(
    rows: list[ReferenceRow], max_evals: int = 60, workers: int = 2
) -> dict[str, list[RowResult]]:
    """Held-out results per source family (one refit each, ``workers`` in parallel)."""
    families = sorted({source_family(r.source_group) for r in rows})
    jobs = [(rows, family, max_evals) for family in families]
    if workers <= 1:
        return dict(map(_held_out, jobs))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(_held_out, jobs))
