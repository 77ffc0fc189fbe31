"""Access control: tokens stored hashed, write routes refused without a valid token when the
server listens beyond loopback (or is told to require tokens), reads stay open; CORS off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.tokens import TokenRepository
from results.tokens import hash_token
from tests.api.conftest import SMALL_SPEC


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'access.db'}"
    upgrade_to_head(make_engine(url))
    return url


def make_token(db_url: str, name: str = "ci") -> tuple[str, int]:
    with session_scope(make_session_factory(make_engine(db_url))) as session:
        token, record = TokenRepository(session).create(name)
    return token, record.id


@pytest.fixture
def guarded(db_url: str) -> Iterator[TestClient]:
    """A server that believes it listens on all interfaces."""
    settings = Settings(database_url=db_url, host="0.0.0.0", executor="local")
    assert settings.tokens_required
    with TestClient(create_app(settings)) as client:
        yield client


def test_tokens_are_stored_hashed(db_url: str) -> None:
    token, _ = make_token(db_url)
    engine = make_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select token_hash from api_tokens")).scalars().all()
    assert stored == [hash_token(token)]
    assert token not in stored[0]


def test_writes_need_a_valid_token_beyond_loopback(guarded: TestClient, db_url: str) -> None:
    refused = guarded.post("/v1/jobs", json=SMALL_SPEC)
    assert refused.status_code == 401
    assert "paretune token create" in refused.json()["detail"]
    wrong = guarded.post("/v1/jobs", json=SMALL_SPEC, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    token, token_id = make_token(db_url)
    ok = guarded.post("/v1/jobs", json=SMALL_SPEC, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 202
    job_id = ok.json()["id"]
    assert guarded.post(f"/v1/jobs/{job_id}/cancel").status_code == 401
    assert guarded.get("/v1/jobs").status_code == 200, "reads stay open"
    assert guarded.get(f"/v1/jobs/{job_id}").status_code == 200
    with session_scope(make_session_factory(make_engine(db_url))) as session:
        assert TokenRepository(session).revoke(token_id)
    revoked = guarded.post(
        "/v1/jobs", json=SMALL_SPEC, headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 401


def test_loopback_server_needs_no_token_and_cors_is_off(db_url: str) -> None:
    settings = Settings(database_url=db_url, host="127.0.0.1", executor="local")
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/jobs", json=SMALL_SPEC, headers={"Origin": "http://evil.example"})
        assert resp.status_code == 202
        assert "access-control-allow-origin" not in resp.headers
