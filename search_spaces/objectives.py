"""Metric names a job can optimise or limit, per job kind, with their natural direction."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict

Direction = Literal["max", "min"]

TRAINING_METRICS: dict[str, Direction] = {
    "tokens_per_s_per_gpu": "max",
    "tokens_per_s": "max",
    "step_time_s": "min",
    "mfu": "max",
    "memory_per_gpu_gib": "min",
    "cost_per_million_tokens_usd": "min",
}

INFERENCE_METRICS: dict[str, Direction] = {
    "output_tokens_per_s_per_gpu": "max",
    "output_tokens_per_s": "max",
    "tokens_per_s_per_user": "max",
    "ttft_ms": "min",
    "tpot_ms": "min",
    "memory_per_gpu_gib": "min",
    "cost_per_million_tokens_usd": "min",
    # documented estimate of the quality lost to weight and KV quantization, percent of the
    # bf16 score (cost_models/inference_data.yaml lists each format's figure and source)
    "quality_loss_pct": "min",
}

DEFAULT_OBJECTIVES: dict[str, list[str]] = {
    "training": ["max:tokens_per_s_per_gpu", "min:memory_per_gpu_gib"],
    "inference": ["max:output_tokens_per_s_per_gpu", "min:tpot_ms"],
}


def metrics_for(kind: str) -> dict[str, Direction]:
    return TRAINING_METRICS if kind == "training" else INFERENCE_METRICS


class Objective(BaseModel):
    """One objective: a metric and whether to maximise or minimise it."""

    model_config = ConfigDict(frozen=True)

    metric: str
    direction: Direction

    @classmethod
    def parse(cls, text: str, kind: str) -> Objective:
        """Parse ``max:metric`` / ``min:metric`` (a bare metric takes its natural direction)."""
        known = metrics_for(kind)
        direction, _, metric = text.rpartition(":")
        metric = metric.strip()
        if metric not in known:
            raise ValueError(
                f"unknown {kind} metric '{metric}' in objective '{text}'; "
                f"use one of: {', '.join(sorted(known))}"
            )
        if direction == "":
            direction = known[metric]
        if direction not in ("max", "min"):
            raise ValueError(f"objective '{text}' must start with 'max:' or 'min:'")
        return cls(metric=metric, direction=direction)

    def __str__(self) -> str:
        return f"{self.direction}:{self.metric}"

    def loss(self, value: float) -> float:
        """The value as something to minimise."""
        return -value if self.direction == "max" else value
