"""Error responses: 422 with the field path and the reason; never a bare 500 for input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from search_spaces.job_spec import error_locations

log = logging.getLogger(__name__)


class SpecError(Exception):
    """A job spec that failed validation, as (field path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]], where: str = "body") -> None:
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in errors))
        self.errors = errors
        self.where = where  # "body" or "query": the first element of each error's loc

    @classmethod
    def from_validation(cls, exc: ValidationError) -> SpecError:
        return cls(error_locations(exc))


def detail(errors: list[tuple[str, str]], where: str = "body") -> list[dict[str, Any]]:
    """FastAPI's 422 item shape (loc, msg, type) plus ``field``, the dotted path."""
    return [
        {
            "loc": [where, *[p for p in loc.split(".") if p]],
            "msg": msg,
            "type": "value_error",
            "field": loc,
        }
        for loc, msg in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SpecError)
    async def _spec_error(request: Request, exc: SpecError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": detail(exc.errors, exc.where)})

    @app.exception_handler(RequestValidationError)
    async def _request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        items = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            items.append(
                {
                    "loc": loc,
                    "msg": err.get("msg", "invalid"),
                    "type": err.get("type", "value_error"),
                    "field": ".".join(loc[1:]),
                }
            )
        return JSONResponse(status_code=422, content={"detail": items})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """As FastAPI answers, except that a 405's ``Allow`` lists the methods of every
        route on the path (Starlette names only the first route's)."""
        if exc.status_code == 405:
            allowed = sorted(
                method
                for route in app.router.routes
                if route.matches(request.scope)[0] != Match.NONE
                for method in getattr(route, "methods", None) or ()
            )
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_away(request: Request, exc: Exception) -> JSONResponse:
        """The database is briefly unreachable (restarting): the client may retry."""
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is unavailable; retry in a few seconds"},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            status_code=500,
            content={
                "detail": f"internal error ({type(exc).__name__}); the server log has details"
            },
        )
