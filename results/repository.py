"""The one way into the results database: frozen records in, frozen records out.

``JobRepository`` wraps a caller-owned ``Session``. It only ever flushes; the caller's
``session_scope`` (or the API's per-request dependency) commits or rolls back, so one unit of
work can span several calls (STYLE habits 10 and 11). Reads and writes are SQL statements on
the tables rather than loaded ORM objects: nothing can go stale in the identity map, and a
thousand trials are one ``executemany`` instead of a thousand tracked objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from results import _queries as q
from results._queries import JOB_STATUSES
from results._queries import jobs
from results._queries import pareto_points
from results._queries import recommendations
from results._queries import trials
from results.claim_policy import NO_COMMANDS
from results.claim_policy import CommandPolicy
from results.claim_policy import evaluator_columns
from results.orm import JobRow
from results.orm import utcnow
from results.records import TERMINAL_STATUSES
from results.records import JobRecord
from results.records import ParetoPoint
from results.records import Recommendation
from results.records import TrialRecord

_CLAIM_ATTEMPTS = 20
_IN_CHUNK = 500  # keys per IN (...) list: far below every backend's parameter limit


class JobNotFoundError(LookupError):
    """A write named a job that does not exist (a missing job on read is just ``None``)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}")
        self.job_id = job_id


class JobRepository:
    """Jobs, trials, Pareto fronts and recommendations over one ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- jobs -------------------------------------------------------------------------------

    def create_job(
        self, spec: dict[str, Any], name: str, kind: str, trials_planned: int = 0
    ) -> JobRecord:
        """Store a new queued job; flushed, so the caller can add trials in the same scope."""
        q.check_json("the job spec", spec)
        row = JobRow(
            name=name,
            kind=kind,
            status="queued",
            spec=spec,
            trials_planned=trials_planned,
            trials_done=0,
            trials_failed=0,
            trials_pruned=0,
            trials_infeasible=0,
            cancel_requested=False,
            **evaluator_columns(spec),
        )
        self.session.add(row)
        self.session.flush()
        return self._require_job(row.id)

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self.session.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else JobRecord.model_validate(row._asdict())

    def list_jobs(
        self, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobRecord]:
        """Newest first, for the job list page."""
        query = q.job_filter(select(jobs), status)
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        rows = self.session.execute(q.page(query, limit, offset)).all()
        return [JobRecord.model_validate(r._asdict()) for r in rows]

    def count_jobs(self, status: str | None = None) -> int:
        query = q.job_filter(select(func.count()).select_from(jobs), status)
        return int(self.session.scalar(query) or 0)

    def claim_next_queued(
        self, worker_id: str, commands: CommandPolicy = NO_COMMANDS
    ) -> JobRecord | None:
        """Move the oldest queued job that ``commands`` lets this runner run to running for
        ``worker_id``; ``None`` if there is none. Jobs it may not run (command jobs whose
        command its operator did not allow-list) are skipped and stay queued for a runner
        that may; by default a claimer runs no command job at all.

        Exclusive across processes: on PostgreSQL the candidate row is locked with
        ``FOR UPDATE SKIP LOCKED`` (a rival claimer skips to the next job instead of waiting);
        elsewhere the UPDATE is conditional on the row still being queued, and a lost race
        moves on to the next candidate.
        """
        skip_locked = self.session.get_bind().dialect.name == "postgresql"
        claimable = commands.claimable()
        for _ in range(_CLAIM_ATTEMPTS):
            query = select(jobs.c.id).where(jobs.c.status == "queued")
            if claimable is not None:
                query = query.where(claimable)
            query = query.order_by(jobs.c.created_at, jobs.c.id).limit(1)
            if skip_locked:
                query = query.with_for_update(skip_locked=True)
            job_id = self.session.scalar(query)
            if job_id is None:
                return None
            now = utcnow()
            claimed = self._update_jobs(
                and_(jobs.c.id == job_id, jobs.c.status == "queued"),
                status="running",
                started_at=now,
                heartbeat_at=now,
                worker_id=worker_id,
            )
            if claimed:
                return self._require_job(job_id)
        return None

    def release_unrunnable(self, job_id: str, worker_id: str) -> bool:
        """Give back to the queue a job ``worker_id`` claimed but may not run (its command is
        not on that runner's allow-list: a row stored by an older server, without the
        evaluator columns), filling the columns in from the spec so that the claim filter
        skips it from now on. False when the job is no longer this runner's."""
        job = self.get_job(job_id)
        if job is None:
            return False
        owned = and_(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.worker_id == worker_id)
        released = self._update_jobs(
            owned,
            status="queued",
            started_at=None,
            worker_id=None,
            heartbeat_at=None,
            **evaluator_columns(job.spec),
        )
        return released > 0

    def requeue_running(self) -> int:
        """Put every running job back in the queue; returns how many.

        Only for a database no live server uses (an offline repair): servers sweep with
        :meth:`requeue_stale`, which leaves jobs with a fresh heartbeat alone.
        """
        return self._requeue(jobs.c.status == "running")

    def requeue_stale(self, stale_after_s: float) -> int:
        """Requeue running jobs whose heartbeat is older than ``stale_after_s``; returns how many.

        A running job's owner heartbeats it every few seconds (:meth:`heartbeat`), so a stale
        heartbeat means the owner died: the job resumes from its stored trials wherever it is
        claimed next. Safe with several servers on one database: a live owner's heartbeat
        and this sweep update the same row, so they serialise, and the sweep's condition is
        checked again on the row it updates. Jobs whose cancellation was requested are
        finished as cancelled instead.
        """
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        stale = or_(
            jobs.c.heartbeat_at < cutoff,
            and_(
                jobs.c.heartbeat_at.is_(None),
                or_(jobs.c.started_at.is_(None), jobs.c.started_at < cutoff),
            ),
        )
        return self._requeue(and_(jobs.c.status == "running", stale))

    def _requeue(self, where: ColumnElement[bool]) -> int:
        self._update_jobs(
            and_(where, jobs.c.cancel_requested.is_(True)),
            status="cancelled",
            finished_at=utcnow(),
        )
        return self._update_jobs(
            where, status="queued", started_at=None, worker_id=None, heartbeat_at=None
        )

    def heartbeat(self, job_id: str, worker_id: str | None = None) -> bool:
        """Stamp the job as alive if it is still running for ``worker_id`` (None: a job run
        without a claim, by `paretune tune`); False means the job was taken away (requeued
        after a stale heartbeat, cancelled, deleted) and its runner must stop writing."""
        owned = and_(
            jobs.c.id == job_id,
            jobs.c.status == "running",
            jobs.c.worker_id.is_not_distinct_from(worker_id),
        )
        return self._update_jobs(owned, heartbeat_at=utcnow()) > 0

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        """Move a job to ``status``; terminal statuses stamp ``finished_at``."""
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}; expected one of {JOB_STATUSES}")
        now = utcnow()
        values: dict[str, Any] = {"status": status, "error": error}
        if status in TERMINAL_STATUSES:
            values["finished_at"] = now
        elif status == "running":
            values["started_at"] = func.coalesce(jobs.c.started_at, now)
            values["finished_at"] = None
        else:
            values.update(started_at=None, finished_at=None, worker_id=None)
        self._update_job(job_id, **values)

    def set_search_info(
        self, job_id: str, search_mode: str, space_size: int, trials_planned: int
    ) -> None:
        self._update_job(
            job_id, search_mode=search_mode, space_size=space_size, trials_planned=trials_planned
        )

    def update_best(self, job_id: str, best: dict[str, Any]) -> None:
        q.check_json("the best-trial summary", best)
        self._update_job(job_id, best=best)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a queued one at once, a running one by raising the flag its runner
        polls (``is_cancel_requested``); a finished job is left as it is."""
        self._update_jobs(
            and_(jobs.c.id == job_id, jobs.c.status == "queued"),
            status="cancelled",
            finished_at=utcnow(),
            cancel_requested=True,
        )
        self._update_jobs(
            and_(jobs.c.id == job_id, jobs.c.status == "running"), cancel_requested=True
        )
        return self._require_job(job_id)

    def is_cancel_requested(self, job_id: str) -> bool:
        """True once a user asked to stop the job, or if the job was deleted meanwhile."""
        query = select(jobs.c.cancel_requested).where(jobs.c.id == job_id)
        flag = self.session.scalar(query)
        return True if flag is None else bool(flag)

    def delete_job(self, job_id: str) -> bool:
        """Delete a job; its trials, front and recommendation go with it (ON DELETE CASCADE)."""
        result = self.session.execute(delete(jobs).where(jobs.c.id == job_id))
        return q.rowcount(result) > 0

    # -- trials -----------------------------------------------------------------------------

    def add_trials(self, job_id: str, records: Sequence[TrialRecord]) -> int:
        """Store finished trials and bump the job's counters in the same flush.

        A trial whose number the job already holds is skipped (so a resumed job never stores
        a trial twice; within one call the first of a number wins). Counters: ``trials_done``
        counts every stored trial; ``trials_failed`` and ``trials_pruned`` count those states;
        ``trials_infeasible`` counts trials judged infeasible (``feasible`` false, state not
        failed, since a failed evaluation says nothing about feasibility). Returns how many
        trials were stored.
        """
        fresh = self._fresh_trials(job_id, records)
        for record in fresh:
            q.check_finite(f"trial {record.number}", record.metrics)
        self._update_job(
            job_id,
            trials_done=jobs.c.trials_done + len(fresh),
            trials_failed=jobs.c.trials_failed + sum(t.state == "failed" for t in fresh),
            trials_pruned=jobs.c.trials_pruned + sum(t.state == "pruned" for t in fresh),
            trials_infeasible=jobs.c.trials_infeasible + sum(map(q.is_infeasible, fresh)),
        )
        if fresh:
            now = utcnow()
            rows = [q.trial_values(job_id, t, now) for t in fresh]
            self.session.execute(insert(trials), rows)
        return len(fresh)

    def _fresh_trials(self, job_id: str, records: Sequence[TrialRecord]) -> list[TrialRecord]:
        by_number: dict[int, TrialRecord] = {}
        for record in records:
            by_number.setdefault(record.number, record)
        if not by_number:
            return []
        stored = set(self._stored_numbers(job_id, by_number))
        return [t for n, t in by_number.items() if n not in stored]

    def _stored_numbers(self, job_id: str, numbers: Iterable[int]) -> list[int]:
        """Which of ``numbers`` the job holds (a range scan: no parameter-count limits)."""
        wanted = set(numbers)
        query = select(trials.c.number).where(
            trials.c.job_id == job_id, trials.c.number.between(min(wanted), max(wanted))
        )
        return [n for n in self.session.scalars(query) if n in wanted]

    def list_trials(
        self,
        job_id: str,
        state: str | None = None,
        after: int | None = None,
        limit: int = 100,
        offset: int = 0,
        order_by: str = "number",
        descending: bool = False,
    ) -> list[TrialRecord]:
        """A page of trials. ``after`` keeps numbers greater than it (for polling new ones);
        ``order_by`` is "number" or a metric name (trials without it sort last either way)."""
        query = q.trial_filter(select(trials), job_id, state)
        if after is not None:
            query = query.where(trials.c.number > after)
        query = query.order_by(*q.trial_order(order_by, descending))
        rows = self.session.execute(q.page(query, limit, offset)).all()
        return [TrialRecord.model_validate(r._asdict()) for r in rows]

    def get_trial(self, job_id: str, number: int) -> TrialRecord | None:
        query = select(trials).where(trials.c.job_id == job_id, trials.c.number == number)
        row = self.session.execute(query).first()
        return None if row is None else TrialRecord.model_validate(row._asdict())

    def count_trials(self, job_id: str, state: str | None = None) -> int:
        query = q.trial_filter(select(func.count()).select_from(trials), job_id, state)
        return int(self.session.scalar(query) or 0)

    def all_trials(self, job_id: str) -> list[TrialRecord]:
        """Every trial of the job by number: what a resumed job rebuilds its study from."""
        query = select(trials).where(trials.c.job_id == job_id).order_by(trials.c.number)
        return [TrialRecord.model_validate(r._asdict()) for r in self.session.execute(query)]

    def trial_keys(self, job_id: str) -> dict[str, int]:
        """config_key -> number of the job's first trial with that configuration."""
        query = (
            select(trials.c.config_key, trials.c.number)
            .where(trials.c.job_id == job_id)
            .order_by(trials.c.number.desc())
        )
        return {key: number for key, number in self.session.execute(query)}

    def find_cached_metrics(
        self, config_keys: Iterable[str], evaluator: str
    ) -> dict[str, TrialRecord]:
        """The newest completed trial of any job per key, evaluated by ``evaluator``.

        Reuse is only sound when the key hashes everything the result depends on (model,
        cluster, workload, knobs, evaluator version), not the knobs alone.
        """
        keys = sorted(set(config_keys))
        found: dict[str, TrialRecord] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            query = (
                select(trials)
                .where(
                    trials.c.config_key.in_(keys[i : i + _IN_CHUNK]),
                    trials.c.evaluator == evaluator,
                    trials.c.state == "complete",
                )
                .order_by(trials.c.id)
            )
            for row in self.session.execute(query):
                found[row.config_key] = TrialRecord.model_validate(row._asdict())
        return found

    def find_evaluations(self, eval_keys: Iterable[str]) -> dict[str, TrialRecord]:
        """The newest completed trial of any job per evaluation key (model, cluster,
        workload, knobs and evaluator version all hashed in), for reuse by a new job."""
        keys = sorted({k for k in eval_keys if k})
        found: dict[str, TrialRecord] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            query = (
                select(trials)
                .where(trials.c.eval_key.in_(keys[i : i + _IN_CHUNK]), trials.c.state == "complete")
                .order_by(trials.c.id)
            )
            for row in self.session.execute(query):
                found[row.eval_key] = TrialRecord.model_validate(row._asdict())
        return found

    # -- results ----------------------------------------------------------------------------

    def replace_pareto(self, job_id: str, trial_numbers: Sequence[int]) -> None:
        """Store the job's front, in the given order, in place of the previous one."""
        self._require_job(job_id)
        ordered = list(dict.fromkeys(trial_numbers))
        missing = set(ordered) - set(self._stored_numbers(job_id, ordered)) if ordered else set()
        if missing:
            raise ValueError(f"job {job_id} has no trial(s) {sorted(missing)}")
        self.session.execute(delete(pareto_points).where(pareto_points.c.job_id == job_id))
        if ordered:
            rows = [
                {"job_id": job_id, "trial_number": n, "position": i} for i, n in enumerate(ordered)
            ]
            self.session.execute(insert(pareto_points), rows)

    def get_pareto(self, job_id: str) -> list[ParetoPoint]:
        query = (
            select(trials.c.number.label("trial_number"), trials.c.config, trials.c.metrics)
            .join(
                pareto_points,
                and_(
                    pareto_points.c.job_id == trials.c.job_id,
                    pareto_points.c.trial_number == trials.c.number,
                ),
            )
            .where(pareto_points.c.job_id == job_id)
            .order_by(pareto_points.c.position)
        )
        return [ParetoPoint.model_validate(r._asdict()) for r in self.session.execute(query)]

    def set_recommendation(self, job_id: str, rec: Recommendation) -> None:
        """Store (or replace) the job's recommended configuration."""
        self._require_job(job_id)
        q.check_finite(f"recommendation of job {job_id}", rec.metrics)
        self.session.execute(delete(recommendations).where(recommendations.c.job_id == job_id))
        values = rec.model_dump(mode="json")
        self.session.execute(insert(recommendations).values(job_id=job_id, **values))

    def get_recommendation(self, job_id: str) -> Recommendation | None:
        query = select(recommendations).where(recommendations.c.job_id == job_id)
        row = self.session.execute(query).first()
        return None if row is None else Recommendation.model_validate(row._asdict())

    # -- helpers ----------------------------------------------------------------------------

    def _require_job(self, job_id: str) -> JobRecord:
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def _update_job(self, job_id: str, **values: Any) -> int:
        """Update one job; raises ``JobNotFoundError`` rather than silently doing nothing."""
        count = self._update_jobs(jobs.c.id == job_id, **values)
        if count == 0:
            raise JobNotFoundError(job_id)
        return count

    def _update_jobs(self, where: ColumnElement[bool], **values: Any) -> int:
        return q.rowcount(self.session.execute(update(jobs).where(where).values(**values)))
