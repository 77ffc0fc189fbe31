"""The results backends under test: an SQLite file and a PostgreSQL schema, both built by
the Alembic chain (``upgrade_to_head``), never by ``create_all``.

Every test that takes ``factory`` (or ``engine``) runs once per backend (STYLE habit 14); the
PostgreSQL runs carry the ``pg`` marker. On PostgreSQL a fresh schema per test session keeps
parallel runs on one server apart. Tables are emptied after each test rather than rolled
back, because the claim tests need real commits seen by other connections.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import make_engine
from results.db import make_session_factory
from results.db import upgrade_to_head

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)]
TABLES = ("recommendations", "pareto_points", "trials", "jobs")


@pytest.fixture(scope="session")
def pg_schema_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(server URL, name of a schema created for this session and dropped after it)."""
    url: str = request.getfixturevalue("pg_url")
    schema = f"paretune_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_backend_engine(backend: str, request: pytest.FixtureRequest, path: Path) -> Engine:
    """An engine on an empty database of ``backend`` (not yet migrated)."""
    if backend == "sqlite":
        return make_engine(f"sqlite:///{path / 'results.db'}")
    url, schema = request.getfixturevalue("pg_schema_url")
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


@pytest.fixture(scope="session", params=BACKENDS)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database of each backend, shared by the session."""
    engine = make_backend_engine(request.param, request, tmp_path_factory.mktemp("db"))
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on the shared database, emptied again after the test."""
    yield make_session_factory(engine)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture(params=BACKENDS)
def blank_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each backend, for this test only (migration up/down tests)."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'blank.db'}")
        yield engine
        engine.dispose()
        return
    url, _ = request.getfixturevalue("pg_schema_url")
    schema = f"paretune_blank_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
