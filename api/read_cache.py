"""Serialised read responses of finished jobs, kept in memory, and HTTP validators (ETag).

A finished job (succeeded, failed, cancelled) no longer changes: its trial pages, front,
recommendation and launch files are the same bytes at every read, so they are built once and
served from here. The key holds the job's id, its status and ``finished_at`` (read from the
database at every request, so a job that is run again gets new keys) and the request's
query. Jobs that are not finished are never served from here: their responses are built at
each request. Every cached or built body carries an ETag, so a client that sends it back in
``If-None-Match`` gets a 304 without the body.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from results._queries import jobs
from results.records import TERMINAL_STATUSES

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
JSON = "application/json"


@dataclass(frozen=True)
class CachedBody:
    """A response body with its media type and its strong ETag (a hash of the bytes)."""

    content: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, content: bytes, media_type: str = JSON) -> CachedBody:
        digest = hashlib.blake2b(content, digest_size=16).hexdigest()
        return cls(content, media_type, f'"{digest}"')

    def response(self, request: Request) -> Response:
        """200 with the body, or 304 when the client holds these bytes already."""
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if etag_matches(request.headers.get("if-none-match"), self.etag):
            return Response(status_code=304, headers=headers)
        return Response(self.content, media_type=self.media_type, headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110's weak comparison of ``If-None-Match`` (a list, or ``*``) with ``etag``."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == opaque:
            return True
    return False


@dataclass(frozen=True)
class JobVersion:
    """What tells one state of a job from another, read in one cheap query."""

    status: str
    finished_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in TERMINAL_STATUSES


def job_version(session: Session, job_id: str) -> JobVersion | None:
    """The job's status and finish time, or None when there is no such job."""
    query = select(jobs.c.status, jobs.c.finished_at).where(jobs.c.id == job_id)
    row = session.execute(query).first()
    return None if row is None else JobVersion(row.status, row.finished_at)


class ResponseCache:
    """A thread-safe LRU of ``CachedBody`` under ``max_bytes`` of content in all."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, CachedBody] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> CachedBody | None:
        with self._lock:
            body = self._items.get(key)
            if body is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return body

    def put(self, key: Hashable, body: CachedBody) -> None:
        if len(body.content) > self.max_bytes // 4:
            return  # one huge page would push out everything else
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old.content)
            self._items[key] = body
            self._bytes += len(body.content)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped.content)

    def read(
        self,
        version: JobVersion,
        key: tuple[Hashable, ...],
        build: Callable[[], CachedBody],
    ) -> CachedBody:
        """The body for ``key``: from the cache when the job is finished and it was built
        before, else built now (and kept when the job is finished)."""
        if not version.final:
            return build()
        full_key = (*key, version.status, version.finished_at)
        body = self.get(full_key)
        if body is None:
            body = build()
            self.put(full_key, body)
        return body
