"""The job runner's database sink: batches stored as they finish, the running best kept on
the job (so listing jobs is cheap and shows progress), replaced by the final pick."""

from __future__ import annotations

from pathlib import Path

from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.records import TrialRecord
from results.repository import JobRepository
from search_spaces.objectives import Objective
from tuner.runner import DatabaseSink

OBJECTIVES = [Objective(metric="tokens_per_s_per_gpu", direction="max")]


def trial(number: int, tps: float, feasible: bool = True) -> TrialRecord:
    return TrialRecord(
        number=number,
        config={"tp": number},
        config_key=f"k{number}",
        state="complete",
        metrics={"tokens_per_s_per_gpu": tps},
        feasible=feasible,
    )


def test_running_best_follows_the_batches(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sink.db'}")
    upgrade_to_head(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        job = JobRepository(session).create_job({"objectives": []}, "j", "training")
    sink = DatabaseSink(factory, job.id, OBJECTIVES)

    def best() -> dict | None:
        with session_scope(factory) as session:
            stored = JobRepository(session).get_job(job.id)
        assert stored is not None
        return stored.best

    sink.add([trial(0, 100.0), trial(1, 300.0, feasible=False)])
    first = best()
    assert first is not None and first["trial_number"] == 0 and first["provisional"]
    sink.add([trial(2, 50.0)])
    second = best()
    assert second is not None and second["trial_number"] == 0, "a worse batch keeps the best"
    sink.add([trial(3, 200.0)])
    third = best()
    assert third is not None and third["trial_number"] == 3
    with session_scope(factory) as session:
        assert JobRepository(session).count_trials(job.id) == 4
