"""Background execution of stored jobs: a small pool of job threads, in a runner process of
its own (``tuner.worker``; `paretune serve` starts one) or in the API process (tests).

Each thread claims the oldest queued job from the database (atomically, so several server
processes sharing PostgreSQL never run one job twice), runs it with the driver, writes each
finished batch of trials as it lands, then the front and the recommendation. A running job
is heartbeated; jobs whose heartbeat goes stale (their server died) are requeued by whichever
server sweeps first; a runner that is stopped gives its running jobs back to the queue at
once. Database writes ride out a briefly unavailable database.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.claim_policy import CommandPolicy
from results.db import session_scope
from results.records import JobRecord
from results.records import TrialRecord
from results.repository import JobRepository
from search_spaces.job_spec import format_validation_error
from search_spaces.job_spec import parse_job_spec
from search_spaces.objectives import Objective
from tuner.dispatch import Executor
from tuner.driver import SearchResult
from tuner.driver import build_space
from tuner.driver import plan_search
from tuner.driver import run_search
from tuner.hardware_profiles import resolve_hardware_profile

log = logging.getLogger(__name__)
T = TypeVar("T")


def trial_summary(trial: TrialRecord) -> dict[str, Any]:
    return {"trial_number": trial.number, "config": trial.config, "metrics": trial.metrics}


def best_summary(result: SearchResult) -> dict[str, Any] | None:
    rec = result.recommendation
    if rec is None:
        return None
    return {"trial_number": rec.trial_number, "config": rec.config, "metrics": rec.metrics}


class JobLostError(RuntimeError):
    """The job was taken from this runner (requeued after a stale heartbeat, or deleted):
    another runner may own it now, so this one must stop writing to it."""


# Waits between attempts of a runner's database write: ~16 s in all covers a PostgreSQL
# restart (each retry is a new transaction on a fresh, pre-pinged connection).
DB_RETRY_DELAYS_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _transient(exc: DBAPIError) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated


def with_db_retry(factory: sessionmaker[Session], work: Callable[[JobRepository], T]) -> T:
    """Run ``work`` in a transaction of its own, retrying on a lost connection or a database
    that is briefly away. Every write the runner makes is idempotent (a trial whose number
    is stored is skipped), so replaying a transaction whose commit went unacknowledged is safe.
    """
    for delay in (*DB_RETRY_DELAYS_S, None):
        try:
            with session_scope(factory) as session:
                return work(JobRepository(session))
        except DBAPIError as exc:
            if delay is None or not _transient(exc):
                raise
            reason = str(exc.orig or exc).strip().splitlines()[0]
            log.warning("database unavailable (%s); retrying in %.2f s", reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class Lease:
    """A running job's claim, kept alive by a heartbeat every ``interval_s`` (a daemon
    thread), so servers sharing the database can tell a live job from an orphan
    (``JobRepository.requeue_stale``). Once the heartbeat finds the job gone, ``lost`` is
    set and every later write of the job is refused."""

    def __init__(
        self, factory: sessionmaker[Session], job_id: str, worker_id: str | None, interval_s: float
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.worker_id = worker_id
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id[:8]}", daemon=True)

    def renew(self, repo: JobRepository) -> None:
        """Heartbeat inside the caller's transaction; raises JobLostError when the job is no
        longer this runner's (so the writes that follow in that transaction never happen)."""
        if self.lost.is_set() or not repo.heartbeat(self.job_id, self.worker_id):
            self.lost.set()
            raise JobLostError(f"job {self.job_id} is no longer run by {self.worker_id}")

    def end(self) -> None:
        """The job is finishing: no more heartbeats (its terminal status is being written)."""
        self._stop.set()

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval_s + 5)

    def _run(self) -> None:
        while not self.lost.is_set():
            try:
                with session_scope(self.factory) as session:
                    self.renew(JobRepository(session))
            except JobLostError:
                if not self._stop.is_set():
                    log.warning("job %s was taken from this runner; stopping it", self.job_id)
            except Exception as exc:  # a missed beat is harmless; the next one retries
                log.warning("heartbeat of job %s failed: %s", self.job_id, exc)
            if self._stop.wait(self.interval_s):
                return


class DatabaseSink:
    """Writes each finished batch of trials in its own transaction (live progress); with a
    lease, each write first renews it, so a runner that lost its job writes nothing more."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        objectives: list[Objective],
        lease: Lease | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.factory = factory
        self.job_id = job_id
        self.objectives = objectives
        self.lease = lease
        self.stopping = stopping
        self._best: TrialRecord | None = None
        self._last_cancel_check = 0.0
        self._cancelled = False

    def add(self, trials: list[TrialRecord]) -> None:
        """Store the batch and, when it holds a new best, the job's running best with it."""
        best = self._best_of(trials)

        def write(repo: JobRepository) -> None:
            if self.lease is not None:
                self.lease.renew(repo)
            repo.add_trials(self.job_id, trials)
            if best is not None:
                repo.update_best(self.job_id, {**trial_summary(best), "provisional": True})

        with_db_retry(self.factory, write)

    def _best_of(self, trials: list[TrialRecord]) -> TrialRecord | None:
        """The batch's best feasible trial if it beats the best so far (by the objectives
        in order), else None."""
        candidates = [t for t in trials if t.state == "complete" and t.feasible]
        if self._best is not None:
            candidates.append(self._best)
        if not candidates:
            return None
        best = min(candidates, key=lambda t: [o.loss(t.metrics[o.metric]) for o in self.objectives])
        if best is self._best:
            return None
        self._best = best
        return best

    def lookup(self, eval_keys: list[str]) -> dict[str, TrialRecord]:
        """Stored evaluations of the same ground by any job (reuse across jobs)."""
        return with_db_retry(self.factory, lambda repo: repo.find_evaluations(eval_keys))

    def should_stop(self) -> bool:
        if self.lease is not None and self.lease.lost.is_set():
            return True
        if self.stopping is not None and self.stopping.is_set():
            return True  # the runner is shutting down: the job goes back to the queue
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check > 0.2:
            self._last_cancel_check = now
            self._cancelled = with_db_retry(
                self.factory, lambda repo: repo.is_cancel_requested(self.job_id)
            )
        return self._cancelled


def execute_job(
    factory: sessionmaker[Session],
    job: JobRecord,
    executor: Executor,
    progress: Callable[[int, int], None] | None = None,
    heartbeat_s: float = 5.0,
    stopping: threading.Event | None = None,
) -> tuple[str, SearchResult | None]:
    """Run one claimed (or, from `paretune tune`, running) job to a terminal status, storing
    everything as it goes, and heartbeating it meanwhile.

    Returns the final status and, when the search ran, its result. Bad specs and empty
    spaces end the job as failed with a sentence saying why; nothing raises. A job taken
    from this runner meanwhile (see ``Lease``) returns ``("lost", None)`` untouched. Once
    ``stopping`` is set (the runner shuts down) the search stops after its current batch
    and the job goes back to the queue with its trials: ``("released", None)``; the next
    runner resumes it at once instead of waiting for its heartbeat to go stale.
    """
    with Lease(factory, job.id, job.worker_id, heartbeat_s) as lease:
        try:
            return _execute(factory, job, executor, progress, lease, stopping)
        except JobLostError:
            log.warning("job %s was taken from %s; left to its new runner", job.id, job.worker_id)
            return "lost", None


def _execute(
    factory: sessionmaker[Session],
    job: JobRecord,
    executor: Executor,
    progress: Callable[[int, int], None] | None,
    lease: Lease,
    stopping: threading.Event | None = None,
) -> tuple[str, SearchResult | None]:
    try:
        spec = parse_job_spec(job.spec)
    except ValidationError as exc:
        error = f"invalid spec: {format_validation_error(exc)}"
        return _finish(factory, job.id, "failed", error, lease)
    existing = with_db_retry(factory, lambda repo: repo.all_trials(job.id))
    try:
        spec = with_db_retry(factory, lambda repo: resolve_hardware_profile(spec, repo.session))
        plan = plan_search(spec, build_space(spec))
        with_db_retry(
            factory,
            lambda repo: repo.set_search_info(
                job.id, plan.mode, plan.space_size, plan.trials_planned
            ),
        )
        sink = DatabaseSink(factory, job.id, spec.objectives, lease, stopping)
        result = run_search(spec, executor, sink, existing, progress)
    except JobLostError:
        raise
    except ValueError as exc:
        return _finish(factory, job.id, "failed", str(exc), lease)
    except Exception as exc:  # a crash in a job must not take the server down
        log.error("job %s crashed:\n%s", job.id, traceback.format_exc())
        error = f"internal error: {type(exc).__name__}: {exc}"
        return _finish(factory, job.id, "failed", error, lease)
    if lease.lost.is_set():
        raise JobLostError(job.id)
    stopped = result.cancelled and stopping is not None and stopping.is_set()
    if stopped and not with_db_retry(factory, lambda repo: repo.is_cancel_requested(job.id)):
        return _release(factory, job.id, lease)
    with_db_retry(factory, lambda repo: _store_result(repo, job.id, result, lease))
    status = "cancelled" if result.cancelled else "succeeded"
    return _finish(factory, job.id, status, None, lease)[0], result


def _store_result(repo: JobRepository, job_id: str, result: SearchResult, lease: Lease) -> None:
    lease.renew(repo)
    repo.replace_pareto(job_id, [t.number for t in result.front])
    if result.recommendation:
        repo.set_recommendation(job_id, result.recommendation)
    best = best_summary(result) or {
        "note": "no configuration fits in memory and meets the limits; see the trials' "
        "violations for the nearest misses"
    }
    repo.update_best(job_id, {**best, "sampler": result.sampler, **result.summary})


def _release(factory: sessionmaker[Session], job_id: str, lease: Lease) -> tuple[str, None]:
    """Give a job this runner stops running back to the queue, its trials kept (only while
    the job is still this runner's: the renewal refuses otherwise)."""

    def write(repo: JobRepository) -> None:
        lease.renew(repo)
        lease.end()
        repo.set_status(job_id, "queued")

    with_db_retry(factory, write)
    log.info("job %s released to the queue (its runner is stopping)", job_id)
    return "released", None


def _finish(
    factory: sessionmaker[Session],
    job_id: str,
    status: str,
    error: str | None,
    lease: Lease | None = None,
) -> tuple[str, None]:
    def write(repo: JobRepository) -> None:
        if lease is not None:
            lease.renew(repo)
            lease.end()
        repo.set_status(job_id, status, error)

    with_db_retry(factory, write)
    return status, None


class JobRunner:
    """Runs queued jobs in ``max_concurrent_jobs`` background threads.

    Several runners (server processes) may share one database: claims are exclusive, each
    running job is heartbeated every ``heartbeat_s``, and a sweep (at start, then every
    ``heartbeat_s``) requeues jobs whose heartbeat is older than ``stale_after_s``: those
    of a server that died, wherever it ran.

    ``command_templates`` is this runner's own allow-list (its operator's `--command-template`
    options; none: no command jobs). Admission checked the job against the allow-list of the
    server that took it, which may not be this one: the runner claims only command jobs whose
    command is one of its templates, leaving the rest queued for a runner that may run them,
    and checks the spec again right before running (``results.claim_policy``).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        executor_factory: Callable[[], Executor],
        max_concurrent_jobs: int = 1,
        poll_interval_s: float = 1.0,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 30.0,
        worker_id: str | None = None,
        command_templates: Mapping[str, str] | None = None,
    ) -> None:
        if stale_after_s <= 2 * heartbeat_s:
            raise ValueError(
                f"stale_after_s ({stale_after_s}) must exceed twice heartbeat_s ({heartbeat_s})"
            )
        self.factory = factory
        self.executor_factory = executor_factory
        self.max_concurrent_jobs = max_concurrent_jobs
        self.poll_interval_s = poll_interval_s
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.worker_id = worker_id or f"server-{uuid.uuid4().hex[:8]}"
        self.commands = CommandPolicy.of_templates(command_templates or {})
        self._wake = threading.Event()
        self._stop = threading.Event()  # seen by the running jobs too: they release
        self._threads: list[threading.Thread] = []
        self._executor: Executor | None = None
        self._executor_lock = threading.Lock()

    def start(self, sweep_stale: bool = True) -> None:
        """Start the job threads and, unless told not to, the stale-job sweep (which runs
        once at once: jobs orphaned by a server that died go back to the queue)."""
        if sweep_stale:
            self.sweep()
            self._spawn(self._sweep_loop, "paretune-sweep")
        for i in range(self.max_concurrent_jobs):
            self._spawn(self._loop, f"paretune-job-{i}")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def sweep(self) -> int:
        """Requeue jobs whose heartbeat went stale; returns how many."""
        n = with_db_retry(self.factory, lambda repo: repo.requeue_stale(self.stale_after_s))
        if n:
            log.info("requeued %d job(s) whose runner stopped heartbeating", n)
            self.wake()
        return n

    def wake(self) -> None:
        """A job was submitted: look at the queue now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop claiming; running jobs stop after their current batch and go back to the
        queue (see ``execute_job``). Waits up to ``timeout_s`` for the threads in all."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        """True while a thread of this runner runs (after ``stop``: a job still finishing)."""
        return any(t.is_alive() for t in self._threads)

    def _get_executor(self) -> Executor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = self.executor_factory()
            return self._executor

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.sweep()
            except Exception:  # keep sweeping through database hiccups
                log.error("stale-job sweep error:\n%s", traceback.format_exc())

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with session_scope(self.factory) as session:
                    job = JobRepository(session).claim_next_queued(self.worker_id, self.commands)
                if job is None:
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()
                    continue
                if not self.commands.allows(job.spec):
                    self._release_unrunnable(job)
                    continue
                log.info("job %s claimed by %s", job.id, self.worker_id)
                execute_job(
                    self.factory,
                    job,
                    self._get_executor(),
                    heartbeat_s=self.heartbeat_s,
                    stopping=self._stop,
                )
            except Exception:  # keep the loop alive through database hiccups
                log.error("job loop error:\n%s", traceback.format_exc())
                self._stop.wait(self.poll_interval_s)

    def _release_unrunnable(self, job: JobRecord) -> None:
        """A claimed job whose command this runner's operator did not allow-list (a row the
        claim filter could not judge, stored by an older server): back to the queue, its
        evaluator columns filled in so that no runner without the template claims it again."""
        released = with_db_retry(
            self.factory, lambda repo: repo.release_unrunnable(job.id, self.worker_id)
        )
        log.warning(
            "job %s %s: its command is not on this runner's allow-list (%s); a runner started "
            "with --command-template for it may run it",
            job.id,
            "left queued" if released else "was taken meanwhile",
            self.commands.describe(),
        )
