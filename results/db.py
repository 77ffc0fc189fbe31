"""Engines, sessions and migrations: an SQLite file by default, PostgreSQL by URL.

SQLite is tuned for the deployment it suits (STACK.md, Storage): one writer process (the job
runner) and readers (the API, the dashboard) in WAL mode with a long busy timeout. PostgreSQL is
for several server processes sharing one database; its pool pings connections so a restarted
server is survived without a request failing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import make_url
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

DEFAULT_DATABASE_URL = "sqlite:///paretune.db"
DATABASE_URL_ENV = "PARETUNE_DATABASE_URL"
SQLITE_BUSY_TIMEOUT_S = 30.0
SQLITE_POOL_SIZE = 48

_PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = _PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = _PACKAGE_DIR / "migrations"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one (``--db``), else $PARETUNE_DATABASE_URL, else the file."""
    if explicit:
        return explicit
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def dumps_json(value: Any) -> str:
    """Strict JSON: NaN/Infinity are not JSON, PostgreSQL refuses them and SQLite's json
    functions fail on them later, so they are refused here, where the culprit is known."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"{exc}: store non-finite numbers as null or a string") from exc


def make_engine(url: str | None = None, **engine_kwargs: Any) -> Engine:
    """An engine configured for its backend; ``engine_kwargs`` go to ``create_engine``."""
    parsed = make_url(database_url(url))
    engine_kwargs.setdefault("json_serializer", dumps_json)
    if parsed.get_backend_name() != "sqlite":
        engine_kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **engine_kwargs)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
    connect_args.update(engine_kwargs.pop("connect_args", {}))
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        engine_kwargs.setdefault("poolclass", StaticPool)
    else:
        # A connection per API worker thread (40) and per job, so that no reader ever waits
        # for a connection, and the job runner's writes never queue behind readers (WAL
        # lets readers and the one writer proceed together). SQLite connections are cheap.
        engine_kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        engine_kwargs.setdefault("max_overflow", SQLITE_POOL_SIZE)
    engine = create_engine(parsed, connect_args=connect_args, **engine_kwargs)
    event.listen(engine, "connect", _sqlite_pragmas(wal=not in_memory))
    return engine


def _sqlite_pragmas(wal: bool) -> Any:
    """Per-connection settings: SQLite forgets them when a connection closes."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")  # off by default: no ON DELETE CASCADE
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough under WAL, far faster
        finally:
            cursor.close()

    return on_connect


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic settings from the packaged alembic.ini, with absolute paths (no cwd needed).

    With ``connection`` the migrations run on it (inside the caller's transaction); without,
    ``migrations/env.py`` opens ``database_url()``.
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine_or_url: Engine | str | None = None) -> None:
    """Create or upgrade the schema to the newest revision (idempotent; safe at each start)."""
    if isinstance(engine_or_url, Engine):
        _migrate(engine_or_url, "head")
        return
    engine = make_engine(engine_or_url)
    try:
        _migrate(engine, "head")
    finally:
        engine.dispose()


def _migrate(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (callers read them after the scope)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block succeeds, roll back if it raises.

    Repositories only flush; this is the one place that commits (STYLE habit 11).
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
