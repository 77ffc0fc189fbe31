"""FastAPI dependencies: one session per request (commit on success, rollback on error)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi import HTTPException
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from api.settings import Settings
from results.repository import JobRepository
from results.tokens import TokenRepository
from tuner.runner import JobRunner


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_repo(session: SessionDep) -> JobRepository:
    return JobRepository(session)


RepoDep = Annotated[JobRepository, Depends(get_repo)]


def get_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runner
    return runner


RunnerDep = Annotated[JobRunner, Depends(get_runner)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


_bearer = HTTPBearer(auto_error=False, description="API token (paretune token create)")


def require_write_token(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Write routes need a valid token whenever the server listens beyond loopback."""
    if not request.app.state.settings.tokens_required:
        return
    if credentials is None:
        raise HTTPException(
            401,
            "this server needs an API token for writes: send 'Authorization: Bearer <token>' "
            "(create one with `paretune token create NAME`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not TokenRepository(session).verify(credentials.credentials):
        raise HTTPException(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )


WriteAccess = Depends(require_write_token)
