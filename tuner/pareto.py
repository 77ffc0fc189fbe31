"""Pareto fronts as pure functions over losses (every objective turned into "smaller is better")."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_indices(losses: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points, one per distinct loss vector, in input order.

    Sorting by the loss tuple first means a point can only be dominated by one earlier in the
    order, so each point is checked against the current front only: O(n * front) instead of
    O(n^2). Duplicated loss vectors keep their first occurrence, so a discrete space does not
    fill the front with identical points.
    """
    order = sorted(range(len(losses)), key=lambda i: (tuple(losses[i]), i))
    front: list[int] = []
    seen: set[tuple[float, ...]] = set()
    for i in order:
        point = tuple(losses[i])
        if point in seen:
            continue
        if any(dominates(losses[j], point) for j in front):
            continue
        front.append(i)
        seen.add(point)
    return sorted(front)
