"""Run one profile in this process or in a fresh child process.

The child (``python -m cost_models.profiling.runner``, request as JSON on stdin, response as
JSON on the last stdout line) is the default: it measures the profile's own peak memory, and an
out-of-memory kill, a segfault or a hang ends only that child, which the parent reports as the
trial's cause. This module imports torch only inside the functions that run the profile.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.profiling.shard import ShardPlan
from cost_models.profiling.shard import plan_shard
from search_spaces.config import TrainingConfig
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

ErrorKind = Literal["oom", "device", "crash", "timeout", "error"]
OUTPUT_TAIL_CHARS = 2000


class ProfilingError(RuntimeError):
    """A profile that did not produce a measurement; ``kind`` says why."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ProfileRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: ModelSpec
    workload: TrainingWorkload
    config: TrainingConfig
    warmup_steps: int
    timed_steps: int
    max_layers: int
    max_hidden_size: int | None = None
    device: str = "auto"
    threads: int = 1


class ProfileResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    plan: ShardPlan
    profile: dict[str, object]  # measure.ShardProfile as JSON (keeps this module torch-free)


def profile_in_process(request: ProfileRequest) -> ProfileResponse:
    """Plan the shard for this device's free memory and time it here."""
    from cost_models.profiling.device import DeviceUnavailableError
    from cost_models.profiling.device import memory_budget_bytes
    from cost_models.profiling.device import pick_device
    from cost_models.profiling.measure import profile_shards

    try:
        device = pick_device(request.device)
    except DeviceUnavailableError as exc:
        raise ProfilingError("device", str(exc)) from None
    plan = plan_shard(
        request.model,
        request.workload,
        request.config,
        max_layers=request.max_layers,
        budget_bytes=memory_budget_bytes(device),
        max_hidden_size=request.max_hidden_size,
    )
    base = plan.shard.model_copy(update={"num_layers": 0, "moe_layers": 0})
    try:
        profile = profile_shards(
            plan.shard,
            base if plan.scaled_layers else None,
            request.device,
            request.warmup_steps,
            request.timed_steps,
            request.threads,
        )
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
            raise ProfilingError("oom", f"out of memory on {device.type}: {exc}") from None
        if "can't allocate memory" in str(exc):
            raise ProfilingError("oom", f"out of memory on {device.type}: {exc}") from None
        raise
    return ProfileResponse(plan=plan, profile=profile.model_dump(mode="json"))


def _tail(text: str) -> str:
    return text[-OUTPUT_TAIL_CHARS:]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def run_in_child(module: str, request: BaseModel, threads: int, timeout_s: float) -> dict[str, Any]:
    """Run ``python -m module`` with the request as JSON on stdin in a fresh process group and
    return the JSON object on its last stdout line; a timeout, a signal, a crash or a reported
    error becomes a ProfilingError with its kind (the trial's failure cause)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(request.model_dump_json(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ProfilingError("timeout", f"profile timed out after {timeout_s:g} s") from None
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode < 0:
        name = _signal_name(-proc.returncode)
        hint = " (likely killed by the OS for using too much memory)" if name == "SIGKILL" else ""
        raise ProfilingError("crash", f"profile process killed by {name}{hint}: {_tail(err)}")
    try:
        payload: dict[str, Any] = json.loads(last)
    except json.JSONDecodeError:
        raise ProfilingError(
            "crash", f"profile process exited with {proc.returncode}: {_tail(err)}"
        ) from None
    if "error" in payload:
        raise ProfilingError(payload.get("kind", "error"), payload["error"])
    return payload


def profile_in_child(request: ProfileRequest, timeout_s: float) -> ProfileResponse:
    """Run the profile in a fresh Python process; map its fate to a ProfilingError."""
    payload = run_in_child("cost_models.profiling.runner", request, request.threads, timeout_s)
    return ProfileResponse.model_validate(payload)


def _prepare_child() -> None:
    """Die with the parent (Linux: no orphan keeps profiling after its trial was cancelled),
    and run at normal priority when allowed: Ray starts workers at niceness 15, which on a
    busy machine would time the scheduler rather than the device."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def child_main(parse: Callable[[str], Any], run: Callable[[Any], BaseModel]) -> int:
    """Child entry: request on stdin, one JSON line on stdout (the response or an error)."""
    _prepare_child()
    request = parse(sys.stdin.read())
    try:
        response = run(request)
    except ProfilingError as exc:
        print(json.dumps({"error": str(exc), "kind": exc.kind}))
        return 3
    except Exception as exc:  # reported to the parent as the trial's cause
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "kind": "error"}))
        return 4
    print(response.model_dump_json())
    return 0


def main() -> int:
    return child_main(ProfileRequest.model_validate_json, profile_in_process)


if __name__ == "__main__":
    sys.exit(main())
