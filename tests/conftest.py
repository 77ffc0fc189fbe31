"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Any local Ray a test starts binds and advertises 127.0.0.1 only. Ray reads this when it is
# first imported, which a test may do before tuner.dispatch.ensure_ray sets it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO_DIR = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PARETUNE_SHARED_DIR", REPO_DIR.parent / "shared"))
REFERENCE_DIR = SHARED_DIR / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``: the published measurements and HF configs."""
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"{REFERENCE_DIR} is missing: clone the repo with ../shared beside it")
    return REFERENCE_DIR


PG_URL_ENV = "PARETUNE_TEST_PG_URL"
# psycopg's words for "nothing answered" (as opposed to a server that refused us).
_NO_SERVER = (
    "connection refused",
    "timeout expired",
    "no such file or directory",
    "could not translate host name",
    "name or service not known",
    "network is unreachable",
    "no route to host",
)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of the test PostgreSQL server from $PARETUNE_TEST_PG_URL (the Makefile sets it).

    Skips, with the reason, when the variable is unset or no server answers; a server that
    answers but refuses (bad role, missing database) fails the tests instead of hiding them.
    """
    import sqlalchemy as sa

    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need ${PG_URL_ENV} (make pytest sets it)")
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5}, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if any(marker in str(exc).lower() for marker in _NO_SERVER):
            pytest.skip(f"PostgreSQL not reachable at {url}: {reason}")
        pytest.fail(f"PostgreSQL at {url} answered but refused the connection: {reason}")
    finally:
        engine.dispose()
    return url
