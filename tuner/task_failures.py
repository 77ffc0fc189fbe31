"""Ray tasks that run real trials: pipelined submission, deadlines, and failures as trials.

A profiling or command trial can die in ways an analytical batch never does: the worker
process crashes or is killed for memory, the node goes away, the run hangs. None of these may
stall or crash the job: each becomes a failed trial whose error says what happened. Ray retries
a task whose worker died (``max_retries``); what is left after the retries is reported here.
Tasks are kept in flight only as many as the cluster can run at once, so a task's deadline
counts from (about) when it started rather than from when it was queued.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from tuner.evaluation import failed_outcome

Batch = list[dict[str, Any]]
_RESOURCE_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}


def unschedulable_reason(options: dict[str, Any], resources: dict[str, Any]) -> str | None:
    """Why no node could ever run a task with ``options`` (Ray would wait forever), if so."""
    for key, name in _RESOURCE_NAMES.items():
        need = float(options.get(key, 1.0 if key == "num_cpus" else 0.0))
        have = float(resources.get(name, 0.0))
        if need > have:
            return (
                f"a trial needs {need:g} {name}(s) but the Ray cluster has {have:g}; lower the "
                f"evaluator's {key} or add a node that has them"
            )
    return None


def concurrent_slots(options: dict[str, Any], resources: dict[str, Any]) -> int:
    """How many tasks with ``options`` fit on the cluster at once (at least one)."""
    slots = math.inf
    for key, name in _RESOURCE_NAMES.items():
        need = float(options.get(key, 1.0 if key == "num_cpus" else 0.0))
        if need > 0:
            slots = min(slots, float(resources.get(name, 0.0)) // need)
    return max(1, int(slots)) if math.isfinite(slots) else 64


def failure_cause(exc: BaseException) -> str:
    """A sentence for a task that did not return outcomes."""
    import ray.exceptions as rex

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, rex.OutOfMemoryError):
        return "out of memory: Ray's memory monitor killed the worker (node memory exhausted)"
    if isinstance(exc, rex.WorkerCrashedError):
        return (
            "the worker process died (a crash, or killed by the OS, e.g. for memory); Ray "
            "retried the task and gave up"
        )
    if isinstance(exc, rex.TaskCancelledError):
        return "the task was cancelled"
    if isinstance(exc, rex.NodeDiedError | rex.ObjectLostError):
        return f"the node running the trial was lost: {first}"
    if isinstance(exc, rex.RayTaskError):
        return f"the task raised {type(exc.cause).__name__}: {exc.cause}"
    return f"{type(exc).__name__}: {first}"


def _outcomes(ref: Any, chunk: Batch) -> Batch:
    import ray

    try:
        outcomes: Batch = ray.get(ref)
    except ray.exceptions.RayError as exc:
        cause = failure_cause(exc)
        return [failed_outcome(cause, failure=type(exc).__name__) for _ in chunk]
    return outcomes


def run_ray_tasks(
    remote: Any,
    spec_ref: Any,
    chunks: list[Batch],
    timeout_s: float | None,
    options: dict[str, Any],
    resources: dict[str, Any],
) -> Iterator[tuple[int, Batch]]:
    """Yield ``(chunk index, outcomes)`` as tasks end; tasks past ``timeout_s`` are
    cancelled (``force=True`` kills the worker) and reported as timed out."""
    import ray

    waiting = list(range(len(chunks)))
    limit = concurrent_slots(options, resources) if timeout_s else len(chunks)
    pending: dict[Any, tuple[int, float]] = {}
    while waiting or pending:
        while waiting and len(pending) < limit:
            i = waiting.pop(0)
            pending[remote.remote(spec_ref, chunks[i])] = (i, time.monotonic())
        wait_s = None
        if timeout_s:
            first_deadline = min(start for _, start in pending.values()) + timeout_s
            wait_s = max(0.0, first_deadline - time.monotonic())
        done, _ = ray.wait(list(pending), num_returns=1, timeout=wait_s)
        for ref in done:
            i, _ = pending.pop(ref)
            yield i, _outcomes(ref, chunks[i])
        if not timeout_s:
            continue
        now = time.monotonic()
        for ref, (i, start) in list(pending.items()):
            if now - start >= timeout_s:
                ray.cancel(ref, force=True)
                del pending[ref]
                error = f"timed out after {timeout_s:g} s on the worker; the task was cancelled"
                yield i, [failed_outcome(error, failure="timeout") for _ in chunks[i]]
