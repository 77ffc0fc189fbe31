"""FastAPI dependencies: one session per request (commit on success, rollback on error).

Dependencies that only read ``app.state`` are ``async``: FastAPI runs a plain ``def``
dependency in the thread pool, a thread hop per request for an attribute lookup."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi import HTTPException
from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from api.read_cache import ResponseCache
from api.runners import RunnerHandle
from api.settings import Settings
from results.repository import JobRepository
from results.tokens import TokenRepository


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


async def get_repo(session: SessionDep) -> JobRepository:
    return JobRepository(session)


RepoDep = Annotated[JobRepository, Depends(get_repo)]


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    """For read routes that open their session themselves, in the one worker thread their
    body runs in (a sync dependency costs each request thread hops of its own)."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]


async def get_runner(request: Request) -> RunnerHandle:
    runner: RunnerHandle = request.app.state.runner
    return runner


RunnerDep = Annotated[RunnerHandle, Depends(get_runner)]


async def get_read_cache(request: Request) -> ResponseCache:
    cache: ResponseCache = request.app.state.read_cache
    return cache


ReadCacheDep = Annotated[ResponseCache, Depends(get_read_cache)]


async def get_settings(request: Request) -> Settings:
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
