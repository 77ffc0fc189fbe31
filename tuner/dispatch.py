"""Executors: where batches of trials run. Ray for real (local or an existing cluster),
in-process for unit tests and tiny jobs; both behind one small interface.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import Protocol

from tuner.evaluation import evaluate_batch
from tuner.task_failures import run_ray_tasks
from tuner.task_failures import unschedulable_reason

Batch = list[dict[str, Any]]
# Per-task options for trials that run something real: num_cpus, num_gpus, max_retries (Ray's
# retries of a task whose worker died), timeout_s (a task still running then is cancelled).
TaskOptions = dict[str, Any]


class Executor(Protocol):
    """Runs :func:`tuner.evaluation.evaluate_batch` over chunks of configurations."""

    name: str

    def run(
        self, spec_json: str, chunks: list[Batch], options: TaskOptions | None = None
    ) -> Iterator[tuple[int, Batch]]:
        """Yield ``(chunk index, outcomes)`` as chunks finish, in any order; a chunk whose
        task failed comes back as failed outcomes with the cause, never as an exception."""
        ...


class LocalExecutor:
    """Evaluates in the calling thread. For unit tests and `--executor local`."""

    name = "local"
    resources: dict[str, Any] = {}  # nothing to request in-process

    def run(
        self, spec_json: str, chunks: list[Batch], options: TaskOptions | None = None
    ) -> Iterator[tuple[int, Batch]]:
        """Resources and timeouts are Ray's to enforce; in-process trials simply run (the
        profile and command evaluators still apply their own timeouts)."""
        for i, chunk in enumerate(chunks):
            yield i, evaluate_batch(spec_json, chunk)


_RAY_LOCK = threading.Lock()


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Start (or join) Ray once per process, lean: small object store, no log forwarding.

    ``address`` (or ``RAY_ADDRESS``) joins an existing cluster; otherwise a local one is
    started bound to 127.0.0.1. Returns the cluster's resources. Call it from the main
    thread: a Ray driver initialised in another thread takes the process down when that
    thread ends.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if is_loopback(address):
        # Read by Ray when it is first imported, so set before: at 0 Ray binds and advertises
        # 127.0.0.1 only; at Linux's default (1) it listens on every interface, advertises
        # the machine's address, and turns 127.0.0.1 into that address. A remote cluster
        # needs the default, so that its nodes can reach this driver.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    with _RAY_LOCK:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "log_to_driver": False,
                "include_dashboard": False,
                "ignore_reinit_error": True,
            }
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(
                    num_cpus=num_cpus or os.cpu_count() or 1,
                    object_store_memory=80 * 1024 * 1024,
                    **kwargs,
                )
        resources: dict[str, Any] = ray.cluster_resources()
        return resources


def is_loopback(address: str | None) -> bool:
    """True for no address (a local cluster) or one on this machine's loopback."""
    if not address:
        return True
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


_REMOTE: Any = None


def _remote_evaluate_batch() -> Any:
    """The Ray remote wrapper, built lazily so importing this module never imports Ray."""
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(num_cpus=1, max_retries=2)(evaluate_batch)
    return _REMOTE


class RayExecutor:
    """One Ray task per chunk (chunks batch millisecond-cheap analytical trials)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.resources = ensure_ray(address)

    def run(
        self, spec_json: str, chunks: list[Batch], options: TaskOptions | None = None
    ) -> Iterator[tuple[int, Batch]]:
        """All chunks at once without options (analytical batches); with options, one task
        per chunk with those resources, as many in flight as the cluster can run, each
        cancelled after ``timeout_s``. Failed tasks come back as failed trials."""
        import ray

        from tuner.evaluation import failed_outcome

        task = dict(options or {})
        timeout_s = task.pop("timeout_s", None)
        reason = unschedulable_reason(task, self.resources)
        if reason:
            for i, chunk in enumerate(chunks):
                yield i, [failed_outcome(reason) for _ in chunk]
            return
        remote = _remote_evaluate_batch()
        if task:
            remote = remote.options(**task)
        spec_ref = ray.put(spec_json)
        yield from run_ray_tasks(remote, spec_ref, chunks, timeout_s, task, self.resources)


@dataclass
class DispatchingExecutor:
    """An executor with how one job's evaluator wants its trials sent: configurations per
    task (one for real measurements) and task options (resources, timeout)."""

    inner: Executor
    chunk_size: int
    options: TaskOptions | None
    name: str = "dispatching"

    @classmethod
    def for_spec(cls, spec: Any, executor: Executor) -> DispatchingExecutor:
        from tuner.kinds import dispatch_for

        dispatch = dispatch_for(spec)
        resources = getattr(executor, "resources", {})
        options = dispatch.task_options(spec, resources) if dispatch.task_options else None
        return cls(executor, dispatch.chunk_size, options)

    def run(
        self, spec_json: str, chunks: list[Batch], options: TaskOptions | None = None
    ) -> Iterator[tuple[int, Batch]]:
        return self.inner.run(spec_json, chunks, options or self.options)


def make_executor(kind: str | None = None, address: str | None = None) -> Executor:
    """``ray`` (default) or ``local``; ``PARETUNE_EXECUTOR`` picks when ``kind`` is None."""
    kind = kind or os.environ.get("PARETUNE_EXECUTOR", "ray")
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor '{kind}'; use 'ray' or 'local'")


def shared_executor_factory(
    kind: str | None = None, address: str | None = None
) -> Callable[[], Executor]:
    """Make the executor now and return a factory that hands out that one instance, for a
    ``JobRunner`` whose job threads share it. Call it from the main thread: a Ray driver
    initialised in a worker thread kills the process when that thread ends."""
    executor = make_executor(kind, address)
    return lambda: executor
