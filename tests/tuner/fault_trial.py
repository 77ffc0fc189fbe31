"""A trial command for the fault-injection tests (run by the ``command`` evaluator).

It records its run, and for the victim configuration first kills the Ray worker that runs
it (its parent process) in the middle of the trial: ``--kill first`` only on the first run
(Ray's retry then succeeds), ``--kill always`` on every run (the retries run out). It refuses
to kill a parent that is not a Ray worker, so a misconfigured test never hits anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path


def is_ray_worker(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    return b"ray::" in cmdline or b"default_worker.py" in cmdline


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--victim-tp", type=int, default=-1)
    parser.add_argument("--kill", choices=["never", "first", "always"], default="never")
    parser.add_argument("--sleep-s", type=float, default=0.5)
    args = parser.parse_args()
    worker = os.getppid()
    with (args.state_dir / "runs.log").open("a") as log:
        log.write(f"{args.tp} {worker}\n")
    marker = args.state_dir / "killed"
    victim = args.tp == args.victim_tp
    if victim and (args.kill == "always" or (args.kill == "first" and not marker.exists())):
        if not is_ray_worker(worker):
            print(f"parent {worker} is not a Ray worker; not killing it", file=sys.stderr)
            return 3
        marker.touch()
        time.sleep(args.sleep_s)  # the trial is under way
        os.kill(worker, signal.SIGKILL)
        return 1
    time.sleep(args.sleep_s)
    print(json.dumps({"tokens_per_s_per_gpu": 1000.0 * args.tp, "memory_per_gpu_gib": 8.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
