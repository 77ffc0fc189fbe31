"""The FastAPI application: REST routes, the dashboard, and the job runner it starts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from api.errors import install_error_handlers
from api.read_cache import ResponseCache
from api.routes import catalog
from api.routes import estimate
from api.routes import events
from api.routes import health
from api.routes import jobs
from api.routes import specs
from api.runners import start_runner
from api.settings import Settings
from results.db import make_engine
from results.db import make_session_factory
from results.db import upgrade_to_head

log = logging.getLogger(__name__)
DASHBOARD_DIR = Path(__file__).parent / "dashboard"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_FILES = {
    "plotly.min.js": PLOTLY_JS,
    "app.js": DASHBOARD_DIR / "app.js",
    "app.css": DASHBOARD_DIR / "app.css",
}


class BodySizeLimit:
    """Refuse bodies over the limit before reading them (413 with the limit). Plain ASGI:
    Starlette's BaseHTTPMiddleware would cost every request an extra task and a copy of
    the response stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                detail = f"request body over {self.max_bytes} bytes; send a smaller spec"
                await JSONResponse(status_code=413, content={"detail": detail})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its lifespan opens the database and starts the job runner that
    ``settings.runner`` names (a supervised process, threads of this process, or none)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        upgrade_to_head(engine)
        app.state.session_factory = make_session_factory(engine)
        app.state.read_cache = ResponseCache()
        runner = start_runner(settings, app.state.session_factory)
        app.state.runner = runner
        log.info(
            "paretune ready: database %s, executor %s, runner %s",
            engine.url.render_as_string(hide_password=True),
            settings.executor,
            settings.runner,
        )
        yield
        await asyncio.to_thread(runner.stop)
        engine.dispose()

    app = FastAPI(
        title="paretune",
        version="0.1.0",
        description="Configuration autotuner for distributed LLM training and inference.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(estimate.router)
    app.include_router(specs.router)
    app.include_router(catalog.router)
    app.include_router(health.router)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        path = STATIC_FILES.get(name)
        if path is None or not path.is_file():
            return JSONResponse(status_code=404, content={"detail": f"no static file {name}"})
        return FileResponse(path)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
