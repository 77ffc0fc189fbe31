"""`GET /v1/jobs/{id}/events`: server-sent progress of one job.

Each change of the job's counters or status is sent as an ``event: progress`` whose data is
the job (JSON); a terminal status ends the stream with ``event: end``. Polling the job row
every half second keeps the stream independent of which server process runs the job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter
from fastapi import HTTPException
from fastapi import Query
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.schemas import error_responses
from results.db import session_scope
from results.records import TERMINAL_STATUSES
from results.records import JobRecord
from results.repository import JobRepository

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

POLL_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0


def _load(request: Request, job_id: str) -> JobRecord | None:
    with session_scope(request.app.state.session_factory) as session:
        return JobRepository(session).get_job(job_id)


def _progress_key(job: JobRecord) -> tuple[object, ...]:
    return (job.status, job.trials_done, job.trials_planned, job.trials_failed, job.search_mode)


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def _stream(request: Request, job_id: str, poll_s: float) -> AsyncIterator[str]:
    last: tuple[object, ...] | None = None
    idle_s = 0.0
    yield "retry: 2000\n\n"
    while True:
        job = await run_in_threadpool(_load, request, job_id)
        if job is None:
            yield sse("error", json.dumps({"detail": f"job {job_id} was deleted"}))
            return
        key = _progress_key(job)
        if key != last:
            last, idle_s = key, 0.0
            yield sse("progress", job.model_dump_json())
        if job.status in TERMINAL_STATUSES:
            yield sse("end", json.dumps({"status": job.status}))
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)
        idle_s += poll_s
        if idle_s >= KEEPALIVE_S:
            idle_s = 0.0
            yield ": keep-alive\n\n"


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(404, 503)},
)
async def job_events(
    job_id: str,
    request: Request,
    poll_s: Annotated[float, Query(ge=0.05, le=10.0)] = POLL_INTERVAL_S,
) -> StreamingResponse:
    if await run_in_threadpool(_load, request, job_id) is None:
        raise HTTPException(404, f"no job with id '{job_id}'; GET /v1/jobs lists them")
    return StreamingResponse(
        _stream(request, job_id, poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
