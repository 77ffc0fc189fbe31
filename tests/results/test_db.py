"""Engine settings per backend, URL resolution, and the unit-of-work scope."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import DEFAULT_DATABASE_URL
from results.db import database_url
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.repository import JobRepository


def test_database_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARETUNE_DATABASE_URL", raising=False)
    assert database_url() == DEFAULT_DATABASE_URL == "sqlite:///paretune.db"
    monkeypatch.setenv("PARETUNE_DATABASE_URL", "sqlite:///from-env.db")
    assert database_url() == "sqlite:///from-env.db"
    assert database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_sqlite_connections_are_tuned(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:

            def pragma(name: str) -> object:
                return conn.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("busy_timeout") == 30000
            assert pragma("foreign_keys") == 1
    finally:
        engine.dispose()


def test_in_memory_sqlite_is_one_database_for_all_sessions() -> None:
    engine = make_engine("sqlite://")
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        job_id = JobRepository(session).create_job({}, "mem", "training").id
    with session_scope(factory) as session:
        assert JobRepository(session).get_job(job_id) is not None
    engine.dispose()


def test_session_scope_commits_or_rolls_back(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as session:
        kept = JobRepository(session).create_job({}, "kept", "training").id
    with pytest.raises(RuntimeError), session_scope(factory) as session:
        lost = JobRepository(session).create_job({}, "lost", "training").id
        raise RuntimeError("boom")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        assert repo.get_job(kept) is not None
        assert repo.get_job(lost) is None


def test_non_finite_json_is_refused(factory: sessionmaker[Session]) -> None:
    """NaN is not JSON: PostgreSQL would reject it, SQLite would store text it cannot read."""
    with session_scope(factory) as session:
        repo = JobRepository(session)
        with pytest.raises(ValueError, match="job spec is not storable as JSON"):
            repo.create_job({"x": math.nan}, "nan", "training")
        job_id = repo.create_job({}, "ok", "training").id
        with pytest.raises(ValueError, match="best-trial summary"):
            repo.update_best(job_id, {"x": [math.inf]})


@pytest.mark.pg
def test_postgres_pool_survives_a_restarted_server(pg_url: str) -> None:
    """pool_pre_ping: connections killed server-side (as by a restart) are replaced unseen."""
    engine = make_engine(pg_url)
    admin = sa.create_engine(pg_url, poolclass=sa.NullPool)
    try:
        assert engine.pool._pre_ping
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("select pg_backend_pid()").scalar()
        with admin.connect() as conn:
            conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
        with engine.connect() as conn:
            assert conn.exec_driver_sql("select pg_backend_pid()").scalar() != pid
    finally:
        engine.dispose()
        admin.dispose()


def test_engine_kwargs_pass_through(tmp_path) -> None:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'y.db'}", echo=True)
    try:
        assert engine.echo is True
    finally:
        engine.dispose()
