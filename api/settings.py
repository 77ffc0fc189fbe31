"""Server settings, from arguments or environment variables (fail fast on bad values)."""

from __future__ import annotations

import os
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import Field
from pydantic import model_validator

from results.db import database_url

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ENV_FIELDS = (
    "max_trials_per_job",
    "max_queued_jobs",
    "heartbeat_s",
    "stale_job_after_s",
    "allow_command_evaluator",
)


class Settings(BaseModel):
    database_url: str | None = Field(
        default=None, description="None = PARETUNE_DATABASE_URL or SQLite."
    )
    host: str = "127.0.0.1"
    max_concurrent_jobs: int = Field(default=1, ge=1, le=64)
    executor: Literal["ray", "local"] = "ray"
    runner: Literal["embedded", "process", "none"] = Field(
        default="embedded",
        description="Where jobs run: 'process' = a runner process the API starts and "
        "supervises (`paretune serve`'s default: reads never wait for a job's Python work), "
        "'embedded' = threads of the API process (tests), 'none' = elsewhere "
        "(`paretune worker` processes sharing the database).",
    )
    runner_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the runner process's CPU priority is than the API's.",
    )
    ray_address: str | None = Field(default=None, description="None = RAY_ADDRESS or a local Ray.")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    poll_interval_s: float = Field(default=1.0, gt=0)
    require_tokens: bool | None = Field(
        default=None,
        description="Write routes need an API token; None = only when listening beyond loopback.",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Empty = CORS off.")
    max_trials_per_job: int = Field(
        default=100_000,
        ge=1,
        description="Refuse (422) a job that would run more trials: a sampled budget.trials, or "
        "an exhaustive evaluation (budget.exhaustive_limit) of a bigger space.",
    )
    max_queued_jobs: int = Field(
        default=100, ge=1, description="Refuse new jobs (429) while this many are queued or running"
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, le=300, description="How often a running job is stamped alive."
    )
    stale_job_after_s: float = Field(
        default=30.0,
        gt=0,
        description="Requeue a running job whose heartbeat is older than this (its server died).",
    )
    allow_command_evaluator: bool = Field(
        default=False,
        description="Accept jobs with the command evaluator, which run programs on the "
        "workers; off unless the server's operator turns it on, and then only the "
        "command_templates.",
    )
    command_templates: dict[str, str] = Field(
        default_factory=dict,
        description="The allow-list: template name -> command template; a job names one as "
        "evaluator.template (tuner/command_allowlist.py).",
    )

    @model_validator(mode="after")
    def _command_allow_list(self) -> Settings:
        """The command evaluator on means on for the listed templates only: fail at start
        rather than refuse every command job later."""
        from tuner.command_allowlist import check_templates

        object.__setattr__(self, "command_templates", check_templates(self.command_templates))
        if self.allow_command_evaluator and not self.command_templates:
            raise ValueError(
                "allow_command_evaluator is on but no command template is allow-listed; give "
                "`paretune serve --command-template NAME=TEMPLATE` or --command-templates FILE"
            )
        if self.command_templates and not self.allow_command_evaluator:
            raise ValueError(
                "command_templates are given but allow_command_evaluator is off; turn it on"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _limits_from_env(cls, data: Any) -> Any:
        """PARETUNE_<FIELD> (e.g. PARETUNE_MAX_QUEUED_JOBS) for the fields not given."""
        if not isinstance(data, dict):
            return data
        for name in ENV_FIELDS:
            value = os.environ.get(f"PARETUNE_{name.upper()}")
            if value and data.get(name) is None:
                data = {**data, name: value}
        return data

    @model_validator(mode="after")
    def _stale_after_heartbeats(self) -> Settings:
        if self.stale_job_after_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"stale_job_after_s ({self.stale_job_after_s}) must exceed twice heartbeat_s "
                f"({self.heartbeat_s}), or live jobs would be taken from their servers"
            )
        return self

    @property
    def tokens_required(self) -> bool:
        if self.require_tokens is not None:
            return self.require_tokens
        return self.host not in LOOPBACK_HOSTS

    @model_validator(mode="after")
    def _from_env(self) -> Settings:
        object.__setattr__(self, "database_url", database_url(self.database_url))
        if self.ray_address is None:
            object.__setattr__(self, "ray_address", os.environ.get("RAY_ADDRESS") or None)
        env_exec = os.environ.get("PARETUNE_EXECUTOR")
        if env_exec in ("ray", "local"):
            object.__setattr__(self, "executor", env_exec)
        return self
