"""Frozen records exchanged between the tuner and the store (no ORM handles leak out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TrialState = Literal["complete", "failed", "pruned"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class TrialRecord(BaseModel):
    """One evaluated configuration of a job."""

    model_config = ConfigDict(frozen=True)

    number: int = Field(ge=0, description="Order of the trial inside its job.")
    config: dict[str, Any]
    config_key: str = Field(description="Content hash of the knobs (TrainingConfig.key()).")
    eval_key: str = Field(
        default="",
        description="Content hash of model, cluster, workload, knobs and evaluator version: "
        "equal keys give equal results, so any job may reuse the evaluation.",
    )
    state: TrialState
    metrics: dict[str, float] = Field(default_factory=dict)
    feasible: bool = Field(default=True, description="Fits in memory and meets every limit.")
    violations: list[str] = Field(default_factory=list, description="Why it is infeasible.")
    details: dict[str, Any] = Field(default_factory=dict, description="Breakdowns, notes.")
    duration_s: float = 0.0
    evaluator: str = "analytical"
    error: str | None = None


class JobRecord(BaseModel):
    """A job as stored, with its counters and current best (cheap to list)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    kind: str
    status: JobStatus
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    trials_planned: int = 0
    trials_done: int = 0
    trials_failed: int = 0
    trials_pruned: int = 0
    trials_infeasible: int = 0
    search_mode: str | None = Field(default=None, description="exhaustive | sampled")
    space_size: int | None = None
    best: dict[str, Any] | None = Field(default=None, description="Current best trial summary.")
    cancel_requested: bool = Field(
        default=False, description="A user asked to stop it; a running job is finishing."
    )
    worker_id: str | None = Field(default=None, description="Server process that claimed it.")
    heartbeat_at: datetime | None = None


class ParetoPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial_number: int
    config: dict[str, Any]
    metrics: dict[str, float]


class Recommendation(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial_number: int
    config: dict[str, Any]
    metrics: dict[str, float]
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)


class ApiTokenRecord(BaseModel):
    """An API token as stored: only its SHA-256 hash, never the token itself."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked: bool = False
