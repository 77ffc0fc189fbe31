"""The Alembic chain builds the schema the models describe, on both backends, and unwinds."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from results.db import MIGRATIONS_DIR
from results.db import alembic_config
from results.db import upgrade_to_head
from results.orm import Base

TABLES = {"jobs", "trials", "pareto_points", "recommendations"}


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_creates_every_table(engine: Engine) -> None:
    assert TABLES | {"alembic_version"} <= table_names(engine)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current_revision(engine) == head


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    """Autogenerate finds nothing to do: models and migrations agree (types, indexes, FKs)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_indexes_and_constraints(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    assert {"ix_jobs_status"} <= {ix["name"] for ix in inspector.get_indexes("jobs")}
    trial_indexes = {ix["name"] for ix in inspector.get_indexes("trials")}
    assert {"ix_trials_job_id", "ix_trials_config_key"} <= trial_indexes
    uniques = inspector.get_unique_constraints("trials")
    assert [u["column_names"] for u in uniques] == [["job_id", "number"]]
    cascades = {
        fk["referred_table"]: fk["options"].get("ondelete")
        for fk in inspector.get_foreign_keys("pareto_points")
    }
    assert cascades == {"jobs": "CASCADE", "trials": "CASCADE"}


def test_downgrade_to_base_then_upgrade_again(blank_engine: Engine) -> None:
    upgrade_to_head(blank_engine)
    upgrade_to_head(blank_engine)  # idempotent: a server upgrades at every start
    assert table_names(blank_engine) >= TABLES
    with blank_engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert not TABLES & table_names(blank_engine)
    assert current_revision(blank_engine) is None
    upgrade_to_head(blank_engine)
    assert table_names(blank_engine) >= TABLES


def test_upgrade_from_a_url_in_another_directory(tmp_path, monkeypatch) -> None:
    """Paths come from the package, not the working directory (an installed server)."""
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade_to_head(url)
    engine = sa.create_engine(url)
    try:
        assert table_names(engine) >= TABLES
    finally:
        engine.dispose()


def test_upgrade_uses_the_environment_url(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("PARETUNE_DATABASE_URL", url)
    upgrade_to_head()
    assert (tmp_path / "from-env.db").exists()


def test_migration_files_are_date_prefixed() -> None:
    names = [p.name for p in (MIGRATIONS_DIR / "versions").glob("*.py")]
    assert names, "no migrations found"
    for name in names:
        assert re.match(r"^\d{4}_\d{2}_\d{2}_\d{4}_[a-z0-9_]+\.py$", name), name


def test_offline_sql_renders(capsys: pytest.CaptureFixture[str]) -> None:
    """``alembic upgrade head --sql`` works too (for DBAs who apply SQL by hand)."""
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", "postgresql+psycopg://u@h/db")
    command.upgrade(config, "head", sql=True)
    assert "CREATE TABLE trials" in capsys.readouterr().out
