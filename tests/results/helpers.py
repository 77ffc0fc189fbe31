"""Small builders shared by the results tests."""

from __future__ import annotations

from typing import Any

from results.records import TrialRecord

SPEC: dict[str, Any] = {"kind": "training", "model": "llama-3.1-8b", "budget": {"trials": 10}}


def trial(
    number: int,
    state: str = "complete",
    metrics: dict[str, float] | None = None,
    *,
    feasible: bool = True,
    key: str | None = None,
    evaluator: str = "analytical",
    **fields: Any,
) -> TrialRecord:
    return TrialRecord(
        number=number,
        config={"tp": 1 + number % 8, "pp": 1},
        config_key=key or f"key-{number}",
        state=state,
        metrics={"tokens_per_s": float(number)} if metrics is None else metrics,
        feasible=feasible,
        evaluator=evaluator,
        **fields,
    )
