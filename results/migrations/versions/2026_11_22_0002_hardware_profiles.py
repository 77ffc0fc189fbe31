"""Hardware profiles: micro-benchmark results per device, driver and library versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Self-contained on purpose (no import of results.orm), like every migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def upgrade() -> None:
    op.create_table(
        "hardware_profiles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("device_kind", sa.String(16), nullable=False),
        sa.Column("driver_version", sa.String(100), nullable=False),
        sa.Column("library_versions", _json(), nullable=False),
        sa.Column("library_key", sa.String(400), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.Column("calibration", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hardware_profiles"),
    )
    op.create_index("ix_hardware_profiles_name", "hardware_profiles", ["name"])
    op.create_index("ix_hardware_profiles_created_at", "hardware_profiles", ["created_at"])
    op.create_index(
        "ix_hardware_profiles_device_versions",
        "hardware_profiles",
        ["device", "driver_version", "library_key"],
    )


def downgrade() -> None:
    op.drop_index("ix_hardware_profiles_device_versions", table_name="hardware_profiles")
    op.drop_index("ix_hardware_profiles_created_at", table_name="hardware_profiles")
    op.drop_index("ix_hardware_profiles_name", table_name="hardware_profiles")
    op.drop_table("hardware_profiles")
