"""Jobs: evaluator type and command hash columns, for runners' command allow-lists.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

A runner claims only jobs it may run (``results.claim_policy``): the claim filters on these
columns in SQL. Existing rows are backfilled from their stored spec here, in Python (SHA-256
is not portable SQL); the rules are copied from ``results.claim_policy`` rather than imported,
so this migration keeps meaning what it meant when it was written. Offline (``--sql``) the
backfill is left out: rows with NULL columns are checked against their spec by the runner that
claims them, which fills the columns in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH_ROWS = 500


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _columns(spec: Any) -> dict[str, str | None]:
    """evaluator_type and command_sha256 of one stored spec (see results.claim_policy)."""
    evaluator = spec.get("evaluator") if isinstance(spec, dict) else None
    if evaluator is None:
        kind: Any = "analytical"
    elif isinstance(evaluator, str):
        kind, evaluator = evaluator, {}
    elif isinstance(evaluator, dict):
        kind = evaluator.get("type", "analytical")
    else:
        kind = "unknown"
    kind = str(kind)[:32]
    if kind != "command":
        return {"evaluator_type": kind, "command_sha256": None}
    command = evaluator.get("command") if isinstance(evaluator, dict) else None
    text = command if isinstance(command, str) else ""
    return {
        "evaluator_type": kind,
        "command_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


def _backfill() -> None:
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String(32)),
        sa.column("spec", _json()),
        sa.column("evaluator_type", sa.String(32)),
        sa.column("command_sha256", sa.String(64)),
    )
    conn = op.get_bind()
    update = (
        jobs.update()
        .where(jobs.c.id == sa.bindparam("job_id"))
        .values(
            evaluator_type=sa.bindparam("new_evaluator_type"),
            command_sha256=sa.bindparam("new_command_sha256"),
        )
    )
    last_id = ""
    while True:  # keyset pages: a large jobs table is never held in memory at once
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.spec)
            .where(jobs.c.id > last_id)
            .order_by(jobs.c.id)
            .limit(_BATCH_ROWS)
        ).all()
        if not rows:
            return
        values = [(r.id, _columns(r.spec)) for r in rows]
        conn.execute(
            update,
            [
                {
                    "job_id": job_id,
                    "new_evaluator_type": v["evaluator_type"],
                    "new_command_sha256": v["command_sha256"],
                }
                for job_id, v in values
            ],
        )
        last_id = rows[-1].id


def upgrade() -> None:
    op.add_column("jobs", sa.Column("evaluator_type", sa.String(32), nullable=True))
    op.add_column("jobs", sa.Column("command_sha256", sa.String(64), nullable=True))
    if not context.is_offline_mode():
        _backfill()


def downgrade() -> None:
    op.drop_column("jobs", "command_sha256")
    op.drop_column("jobs", "evaluator_type")
