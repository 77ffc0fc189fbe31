"""SQLAlchemy 2.0 typed tables: jobs, their trials, the stored Pareto front, the recommendation.

Only ``results.repository`` touches these rows; everything above it sees the frozen records of
``results.records``. The schema itself is created by the Alembic chain in ``migrations/``, never
by ``metadata.create_all`` (a test checks that the two agree).
"""

from __future__ import annotations

import uuid
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import ForeignKeyConstraint
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so migrations can drop/alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere. SQL NULL for Python None.
JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite has no BIGINT autoincrement; INTEGER PRIMARY KEY is its rowid.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timestamps are taken in Python, in UTC, so both backends order them identically."""
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware in, timezone-aware (UTC) out, on every backend.

    SQLite stores no offset, so values are normalised to UTC before storage and tagged UTC
    again on the way out; naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobRow(Base):
    """One tuning job: its spec, lifecycle, progress counters and current best."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    trials_planned: Mapped[int] = mapped_column(Integer, default=0)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    trials_failed: Mapped[int] = mapped_column(Integer, default=0)
    trials_pruned: Mapped[int] = mapped_column(Integer, default=0)
    trials_infeasible: Mapped[int] = mapped_column(Integer, default=0)
    search_mode: Mapped[str | None] = mapped_column(String(16))
    space_size: Mapped[int | None] = mapped_column(BigInteger)
    best: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    # Which server process claimed the job, when it last said it was alive, and whether a
    # user asked it to stop (the runner polls this flag between batches).
    worker_id: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the claim filter needs without reading the spec: the evaluator's type and, for a
    # command job, the SHA-256 of its command line (results.claim_policy). NULL only in rows
    # an older server stored; runners check those against the spec before running them.
    evaluator_type: Mapped[str | None] = mapped_column(String(32))
    command_sha256: Mapped[str | None] = mapped_column(String(64))

    trials: Mapped[list[TrialRow]] = relationship(
        back_populates="job", lazy="raise", passive_deletes=True
    )


class TrialRow(Base):
    """One evaluated configuration; (job_id, number) is its identity inside the job."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    eval_key: Mapped[str] = mapped_column(String(64), index=True, default="")
    state: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, float]] = mapped_column(JsonType)
    feasible: Mapped[bool] = mapped_column(Boolean)
    violations: Mapped[list[str]] = mapped_column(JsonType)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    duration_s: Mapped[float] = mapped_column(Float)
    evaluator: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    job: Mapped[JobRow] = relationship(back_populates="trials", lazy="raise")


class ParetoPointRow(Base):
    """A trial on the job's stored Pareto front; ``position`` keeps the front's order."""

    __tablename__ = "pareto_points"
    __table_args__ = (
        # The point must be a stored trial of the same job; deleting it drops the point.
        ForeignKeyConstraint(
            ["job_id", "trial_number"], ["trials.job_id", "trials.number"], ondelete="CASCADE"
        ),
    )

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    trial_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class RecommendationRow(Base):
    """The one configuration recommended for a job (a copy, so it survives re-ranking)."""

    __tablename__ = "recommendations"

    job_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    trial_number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JsonType)
    metrics: Mapped[dict[str, float]] = mapped_column(JsonType)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ApiTokenRow(Base):
    """A write-access token; the server keeps only ``sha256(token)``."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class HardwareProfileRow(Base):
    """Micro-benchmarks of one device (`paretune calibrate`): what the calibration of the
    analytical model is fitted to. Looked up by name (the newest wins) or by what the figures
    depend on: the device, its driver and the library versions (``library_key``)."""

    __tablename__ = "hardware_profiles"
    __table_args__ = (
        Index("ix_hardware_profiles_device_versions", "device", "driver_version", "library_key"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    device: Mapped[str] = mapped_column(String(200))
    device_kind: Mapped[str] = mapped_column(String(16))
    driver_version: Mapped[str] = mapped_column(String(100))
    library_versions: Mapped[dict[str, str]] = mapped_column(JsonType)
    library_key: Mapped[str] = mapped_column(String(400))
    host: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JsonType)
    calibration: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True, default=utcnow)
