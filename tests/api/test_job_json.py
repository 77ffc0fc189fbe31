"""Jobs with their stored spec and best spliced in are the same JSON, field for field and in
the same order, as the records pydantic validates and dumps; on SQLite and PostgreSQL, with
names and errors that spell the placeholders the splice replaces."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from api.job_json import job_json
from api.job_json import job_list_json
from api.schemas import JobList
from results.db import session_scope
from results.repository import JobRepository
from search_spaces.job_spec import parse_job_spec
from tests.api.conftest import SMALL_SPEC


def check(factory: sessionmaker[Session]) -> None:
    spec = parse_job_spec(SMALL_SPEC).model_dump(mode="json")
    with session_scope(factory) as session:
        repo = JobRepository(session)
        ids = [
            repo.create_job(spec, 'tricky "spec":{} "best":null ünï', "training").id,
            repo.create_job({}, "empty spec", "inference").id,
            repo.create_job(spec, "finished", "training").id,
        ]
        repo.claim_next_queued("worker-x")
        repo.update_best(ids[0], {"trial_number": 3, "metrics": {"mfu": 0.5}, "note": '"spec":{}'})
        repo.set_status(ids[2], "failed", 'crashed: "best":null\nline two')
    with session_scope(factory) as session:
        repo = JobRepository(session)
        for job_id in ids:
            record = repo.get_job(job_id)
            assert record is not None
            raw = job_json(session, job_id)
            assert raw is not None
            assert json.loads(raw) == json.loads(record.model_dump_json())
            assert list(json.loads(raw)) == list(record.model_dump())
        assert job_json(session, "no-such-job") is None
        for status, limit, offset in [(None, 50, 0), (None, 2, 1), ("failed", 50, 0)]:
            page = JobList(
                items=repo.list_jobs(status=status, limit=limit, offset=offset),
                total=repo.count_jobs(status=status),
            )
            raw = job_list_json(session, status=status, limit=limit, offset=offset)
            assert json.loads(raw) == json.loads(page.model_dump_json()), (status, limit)


def test_jobs_match_the_records(migrated_factory: sessionmaker[Session]) -> None:
    check(migrated_factory)
