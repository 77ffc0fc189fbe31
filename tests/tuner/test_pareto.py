"""Pareto front: no front point is dominated, every other point is, order does not matter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from tuner.pareto import dominates
from tuner.pareto import pareto_indices

points = st.lists(
    st.lists(st.integers(min_value=0, max_value=6), min_size=2, max_size=2).map(
        lambda p: [float(x) for x in p]
    ),
    min_size=0,
    max_size=40,
)


def test_dominates_is_strict() -> None:
    assert dominates([1, 1], [1, 2])
    assert not dominates([1, 2], [1, 2])
    assert not dominates([0, 3], [1, 2])


def test_hand_computed_front() -> None:
    losses = [[1, 5], [2, 2], [3, 1], [2, 3], [4, 4], [1, 5]]
    # [2,3] is dominated by [2,2]; [4,4] by [2,2]; the second [1,5] duplicates the first.
    assert pareto_indices(losses) == [0, 1, 2]


@settings(max_examples=200, deadline=None)
@given(points)
def test_front_is_exactly_the_non_dominated_set(losses: list[list[float]]) -> None:
    front = pareto_indices(losses)
    front_points = {tuple(losses[i]) for i in front}
    assert len(front_points) == len(front), "one front point per distinct loss vector"
    for i in front:
        assert not any(dominates(q, losses[i]) for q in losses)
    for j, p in enumerate(losses):
        if tuple(p) not in front_points:
            assert any(dominates(losses[i], p) for i in front), (j, p)


@settings(max_examples=100, deadline=None)
@given(points, st.integers(min_value=0, max_value=10_000))
def test_front_is_invariant_to_order(losses: list[list[float]], seed: int) -> None:
    shuffled = losses[:]
    random.Random(seed).shuffle(shuffled)
    a = {tuple(losses[i]) for i in pareto_indices(losses)}
    b = {tuple(shuffled[i]) for i in pareto_indices(shuffled)}
    assert a == b
