"""`GET /v1/health` says whether jobs can run: the runner's mode and whether it is alive
("degraded" when it is not), beside `/healthz`, which only says the API answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.main import create_app
from api.settings import Settings


def test_health_reports_the_embedded_runner_and_its_stop(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}", executor="local")
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/health").json()
        assert body["status"] == "ok"
        assert body["runner"]["mode"] == "embedded" and body["runner"]["alive"] is True
        client.app.state.runner.stop()  # type: ignore[attr-defined]
        stopped = client.get("/v1/health").json()
        assert stopped["status"] == "degraded" and stopped["runner"]["alive"] is False
        assert client.get("/healthz").json() == {"status": "ok"}


def test_an_api_without_a_runner_is_healthy(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'h.db'}", runner="none")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/health").json() == {
            "status": "ok",
            "runner": {"mode": "none", "alive": None},
        }


def test_a_bad_runner_setting_names_the_field() -> None:
    with pytest.raises(ValidationError, match="runner"):
        Settings(runner="thread")  # type: ignore[arg-type]
