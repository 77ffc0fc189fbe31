"""Cheap reads: finished jobs' responses come from the read cache, a job that is not
finished is read from the database at every request (never a stale page), and the trials,
front, recommendation and catalog answer If-None-Match with 304.

The app runs in-process with no job runner (``runner="none"``); the test plays the runner,
writing to the same SQLite file through the repository, so each state change is exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from api.main import create_app
from api.read_cache import CachedBody
from api.read_cache import ResponseCache
from api.read_cache import etag_matches
from api.settings import Settings
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.records import Recommendation
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tests.api.conftest import SMALL_SPEC
from tests.results.helpers import trial


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cache.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, executor="local", runner="none")
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def factory(client: TestClient, db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)  # the app created the schema
    yield make_session_factory(engine)
    engine.dispose()


class Runner:
    """Writes as the job runner does, one transaction per step."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        spec = parse_job_spec(SMALL_SPEC).model_dump(mode="json")
        with session_scope(factory) as session:
            self.job_id = JobRepository(session).create_job(spec, "cache", "training").id

    def do(self, *steps: Any) -> None:
        with session_scope(self.factory) as session:
            repo = JobRepository(session)
            for step in steps:
                step(repo)

    def claim(self) -> None:
        self.do(lambda repo: repo.claim_next_queued("test-runner"))

    def add(self, *numbers: int) -> None:
        metrics = {"tokens_per_s_per_gpu": 1.0, "step_time_s": 1.0, "memory_per_gpu_gib": 1.0}
        records = [trial(n, metrics={**metrics, "tokens_per_s_per_gpu": float(n)}) for n in numbers]
        self.do(lambda repo: repo.add_trials(self.job_id, records))

    def finish(self, front: list[int]) -> None:
        rec = Recommendation(
            trial_number=front[0], config={"tp": 1, "pp": 1}, metrics={}, reason="fastest"
        )
        self.do(
            lambda repo: repo.replace_pareto(self.job_id, front),
            lambda repo: repo.set_recommendation(self.job_id, rec),
            lambda repo: repo.set_status(self.job_id, "succeeded"),
        )


def numbers(client: TestClient, job_id: str, **params: Any) -> list[int]:
    resp = client.get(f"/v1/jobs/{job_id}/trials", params=params)
    assert resp.status_code == 200, resp.text
    return [t["number"] for t in resp.json()["items"]]


def front(client: TestClient, job_id: str) -> list[int]:
    return [p["trial_number"] for p in client.get(f"/v1/jobs/{job_id}/pareto").json()["points"]]


def test_a_running_job_is_never_served_from_the_cache(
    client: TestClient, factory: sessionmaker[Session]
) -> None:
    cache: ResponseCache = client.app.state.read_cache  # type: ignore[attr-defined]
    run = Runner(factory)
    run.claim()
    run.add(0, 1)
    assert numbers(client, run.job_id) == [0, 1]
    run.add(2)
    assert numbers(client, run.job_id) == [0, 1, 2], "a new trial shows at the next read"
    assert front(client, run.job_id) == []
    assert client.get(f"/v1/jobs/{run.job_id}/recommendation").status_code == 404
    assert len(cache) == 0, "nothing of a running job is kept"

    run.finish([2, 1])
    assert numbers(client, run.job_id) == [0, 1, 2]
    assert front(client, run.job_id) == [2, 1], "the front appears with the finish"
    rec = client.get(f"/v1/jobs/{run.job_id}/recommendation")
    assert rec.json()["trial_number"] == 2
    hits = cache.hits
    assert numbers(client, run.job_id) == [0, 1, 2]
    assert front(client, run.job_id) == [2, 1]
    assert client.get(f"/v1/jobs/{run.job_id}/recommendation").content == rec.content
    assert cache.hits == hits + 3, "the finished job's second reads came from the cache"

    # Run again (a requeue): running reads the database again, the new finish is new keys.
    run.do(lambda repo: repo.set_status(run.job_id, "queued"))
    run.claim()
    run.add(3)
    assert numbers(client, run.job_id) == [0, 1, 2, 3]
    assert front(client, run.job_id) == [2, 1], "the stored front until it is replaced"
    run.finish([3])
    assert numbers(client, run.job_id, descending=True, limit=2) == [3, 2]
    assert front(client, run.job_id) == [3]
    assert client.get(f"/v1/jobs/{run.job_id}/recommendation").json()["trial_number"] == 3

    run.do(lambda repo: repo.delete_job(run.job_id))
    for route in ("trials", "pareto", "recommendation"):
        assert client.get(f"/v1/jobs/{run.job_id}/{route}").status_code == 404


def test_etag_and_if_none_match(client: TestClient, factory: sessionmaker[Session]) -> None:
    run = Runner(factory)
    run.claim()
    run.add(0)
    url = f"/v1/jobs/{run.job_id}/trials"
    first = client.get(url)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    unchanged = client.get(url, headers={"If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert unchanged.headers["etag"] == etag
    run.add(1)
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert [t["number"] for t in changed.json()["items"]] == [0, 1]

    run.finish([1])
    for path in (url, f"/v1/jobs/{run.job_id}/pareto", "/v1/catalog/gpus"):
        tag = client.get(path).headers["etag"]
        for sent in (tag, f"W/{tag}", f'"nope", {tag}', "*"):
            assert client.get(path, headers={"If-None-Match": sent}).status_code == 304, sent
        assert client.get(path, headers={"If-None-Match": '"nope"'}).status_code == 200
    pages = [client.get(url, params={"limit": n}) for n in (1, 2)]
    assert pages[0].headers["etag"] != pages[1].headers["etag"], "the query is in the key"


def test_error_answers_are_not_cached(client: TestClient, factory: sessionmaker[Session]) -> None:
    run = Runner(factory)
    run.claim()
    run.add(0)
    run.finish([0])
    url = f"/v1/jobs/{run.job_id}"
    for _ in range(2):
        assert client.get(f"{url}/trials", params={"order_by": "nope"}).status_code == 422
        assert client.get(f"{url}/recommendation", params={"format": "nope"}).status_code == 422
        assert client.get(f"{url}/recommendation", params={"trial": 7}).status_code == 404
    assert client.get(f"{url}/recommendation", params={"format": "yaml"}).status_code == 200
    assert client.get("/v1/jobs/no-such-job/trials", params={"order_by": "nope"}).status_code == 404


def test_the_cache_keeps_the_newest_bodies_within_its_size() -> None:
    cache = ResponseCache(max_bytes=400)
    for i in range(5):
        cache.put(("k", i), CachedBody.of(bytes(100)))
    assert [cache.get(("k", i)) is not None for i in range(5)] == [False, True, True, True, True]
    cache.get(("k", 1))  # used: now the newest
    cache.put(("k", 5), CachedBody.of(bytes(100)))
    assert cache.get(("k", 1)) is not None and cache.get(("k", 2)) is None
    cache.put(("big",), CachedBody.of(bytes(200)))  # over a quarter of the cache: not kept
    assert cache.get(("big",)) is None


def test_etag_comparison() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag) and etag_matches('W/"abc"', tag)
    assert etag_matches('"x", W/"abc"', tag) and etag_matches("*", tag)
    assert not etag_matches('"abcd"', tag) and not etag_matches(None, tag)
    assert not etag_matches("", tag)
