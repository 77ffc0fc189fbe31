"""What every search space and every configuration type offers the tuner (training today,
inference next), so the driver never needs to know which kind of job it runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from typing import Protocol

from optuna.distributions import BaseDistribution


class KnobConfig(Protocol):
    """One point of a space: a frozen pydantic model with a stable content key."""

    def key(self) -> str: ...

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


class SearchSpace(Protocol):
    """Knob domains plus validity rules, enumerable and viewable as Optuna distributions."""

    knobs: dict[str, list[Any]]

    def violations(self, config: Any) -> list[str]: ...

    def enumerate(self, limit: int | None = None) -> Iterator[Any]: ...

    def count_valid(self, cap: int | None = None) -> int: ...

    def explain_empty(self) -> str: ...

    def to_optuna(self) -> dict[str, BaseDistribution]: ...

    def decode(self, params: dict[str, Any]) -> Any: ...
