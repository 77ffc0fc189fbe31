"""The Pareto front of a job's trials and the configuration paretune recommends from it."""

from __future__ import annotations

from collections.abc import Sequence

from results.records import Recommendation
from results.records import TrialRecord
from search_spaces.objectives import Objective
from tuner.pareto import pareto_indices


def front_of(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Non-dominated feasible trials (fits in memory, meets limits), one per loss vector."""
    candidates = [t for t in trials if t.state == "complete" and t.feasible]
    losses = [[o.loss(t.metrics[o.metric]) for o in objectives] for t in candidates]
    return [candidates[i] for i in pareto_indices(losses)]


def _rank_key(trial: TrialRecord, objectives: Sequence[Objective]) -> tuple[float, ...]:
    return tuple(o.loss(trial.metrics[o.metric]) for o in objectives)


def recommend(
    front: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    trials: Sequence[TrialRecord] = (),
) -> Recommendation | None:
    """Best front point by the first objective, ties broken by the next ones, with why."""
    if not front:
        return None
    best = min(front, key=lambda t: (_rank_key(t, objectives), t.number))
    first = objectives[0]
    feasible = sum(1 for t in trials if t.state == "complete" and t.feasible) or len(front)
    reason = (
        f"{'highest' if first.direction == 'max' else 'lowest'} {first.metric} "
        f"({best.metrics[first.metric]:.4g}) among {feasible} evaluated configurations that fit "
        f"in memory and meet every limit"
    )
    if len(objectives) > 1:
        reason += "; ties broken by " + ", ".join(str(o) for o in objectives[1:])
    reason += f"; one of {len(front)} Pareto-optimal configurations"
    return Recommendation(
        trial_number=best.number,
        config=best.config,
        metrics=best.metrics,
        reason=reason,
        details=best.details,
    )
