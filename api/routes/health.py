"""`GET /v1/health`: whether the server can run jobs, not only answer (`/healthz`).

The API and its job runner are separate processes (`paretune serve`): the API may answer
while its runner is down (restarting after a crash). ``status`` is "degraded" then, and
``runner`` says how it is (mode, process id, restarts, the last exit code)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Request

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    runner: dict[str, Any] = request.app.state.runner.status()
    status = "degraded" if runner.get("alive") is False else "ok"
    return {"status": status, "runner": runner}
