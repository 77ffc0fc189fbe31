"""Read load on a real server while a job runs: latency and errors of the read routes.

Starts `paretune serve` (127.0.0.1, a fresh SQLite database, Ray by default), runs one small
job to the end (so its front and recommendation exist), starts a long sampled job, and while
that job writes its trials runs N concurrent clients (threads, one keep-alive connection
each) against the read routes: the job list, a job, trial pages (the running job's newest,
the finished job's best), the Pareto front and the recommendation. The jobs run in the
runner process the server starts beside its API; ``--runner embedded`` runs them in threads
of the API process instead (the setup before issue 7), a baseline for the same code.
Each client waits ``--think-ms`` between requests (0 = back to back). Prints p50/p99/max
latency per route and overall, requests per second, and the error count (anything but a
200). Clients start at random moments within one think time and think 0.5-1.5 times
``--think-ms``, so they do not march in step.

    .venv/bin/python -m benchmarks.load [--clients 50] [--seconds 20] [--think-ms 0]
        [--executor ray|local] [--runner process|embedded] [--json]

Goal (issue 7): p99 under 100 ms with 50 clients, no errors.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks._server import Server

FINISHED_SPEC: dict[str, Any] = {
    "name": "load: finished",
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
    "workload": {"seq_len": 4096, "global_batch_size": 256},
}
RUNNING_SPEC: dict[str, Any] = {
    "name": "load: running",
    "model": "llama-3.1-70b",
    "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 64},
    "workload": {"seq_len": 8192, "global_batch_size": 512},
    "budget": {"trials": 5000, "batch_size": 16, "exhaustive_limit": 0},
}
MAX_REQUESTS = 500_000  # a bound on the whole run, whatever the speed


def routes(done: str, running: str) -> dict[str, str]:
    return {
        "jobs list": "/v1/jobs?limit=20",
        "job": f"/v1/jobs/{running}",
        "trials (newest 100)": f"/v1/jobs/{running}/trials?limit=100&descending=true",
        "trials (best 100)": (
            f"/v1/jobs/{done}/trials?limit=100&order_by=tokens_per_s_per_gpu&descending=true"
        ),
        "pareto": f"/v1/jobs/{done}/pareto",
        "recommendation": f"/v1/jobs/{done}/recommendation",
    }


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.count = 0

    def add(self, route: str, seconds: float, ok: bool) -> bool:
        """Record one request; False once the run's request bound is reached."""
        with self.lock:
            self.latencies[route].append(seconds)
            if not ok:
                self.errors[route] += 1
            self.count += 1
            return self.count < MAX_REQUESTS


def client(base: str, paths: dict[str, str], offset: int, until: float, think_s: float,
           results: Results) -> None:  # fmt: skip
    names = list(paths)
    rng = random.Random(offset)  # clients out of phase, as real ones are: a random start
    time.sleep(rng.uniform(0, think_s))  # within one think time, then 0.5-1.5 think times
    with httpx.Client(base_url=base, timeout=30) as http:
        i = offset
        while time.monotonic() < until:
            name = names[i % len(names)]
            i += 1
            start = time.perf_counter()
            try:
                ok = http.get(paths[name]).status_code == 200
            except httpx.HTTPError:
                ok = False
            if not results.add(name, time.perf_counter() - start, ok):
                return
            if think_s:
                time.sleep(think_s * rng.uniform(0.5, 1.5))


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; its children excluded)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(results: Results, seconds: float) -> dict[str, Any]:
    rows = {}
    everything = [x for v in results.latencies.values() for x in v]
    for name, values in [*results.latencies.items(), ("all", everything)]:
        errors = sum(results.errors.values()) if name == "all" else results.errors[name]
        rows[name] = {
            "requests": len(values),
            "p50_ms": round(pct(values, 0.50), 1),
            "p99_ms": round(pct(values, 0.99), 1),
            "max_ms": round(max(values) * 1000, 1),
            "mean_ms": round(statistics.fmean(values) * 1000, 1),
            "errors": errors,
        }
    rows["all"]["requests_per_s"] = round(len(everything) / seconds, 1)
    return rows


def run(
    clients: int,
    seconds: float,
    think_ms: float,
    executor: str,
    runner: str = "process",
    http: str = "auto",
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="pt-load-") as tmp,
        Server(Path(tmp), executor, runner=runner, http=http) as srv,
    ):
        done = srv.submit(FINISHED_SPEC)
        assert srv.wait(done)["status"] == "succeeded", srv.log_path.read_text()[-2000:]
        running = srv.submit(RUNNING_SPEC)
        while int(srv.job(running)["trials_done"]) < 50:  # type: ignore[call-overload]
            time.sleep(0.2)
        results = Results()
        paths = routes(done, running)
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(
                target=client, args=(srv.url, paths, i, until, think_ms / 1000, results)
            )
            for i in range(clients)
        ]
        cpu_before_s = process_cpu_s(srv.pid)
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        elapsed = time.monotonic() - start
        api_cpu_s = process_cpu_s(srv.pid) - cpu_before_s
        job = srv.job(running)
        return {
            "clients": clients,
            "seconds": round(elapsed, 1),
            "think_ms": think_ms,
            "executor": executor,
            "runner": runner,
            "http": http,
            "job_status_after": job["status"],
            "job_trials_after": job["trials_done"],
            "routes": summary(results, elapsed),
            # CPU time of the server process (the API; with --runner embedded, the job's
            # work in it too) per request: the read path's cost, whatever the machine's load.
            "server_cpu_ms_per_request": round(1000 * api_cpu_s / max(1, results.count), 2),
        }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['clients']} clients for {report['seconds']} s (think {report['think_ms']:g} ms),"
        f" executor {report['executor']}, runner {report.get('runner', 'process')}, http"
        f" {report.get('http', 'auto')}; the running"
        f" job stored {report['job_trials_after']} trials and was {report['job_status_after']}"
        " at the end"
    )
    print(f"{'route':24} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, row in report["routes"].items():
        print(
            f"{name:24} {row['requests']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8} "
            f"{row['max_ms']:>8} {row['errors']:>7}"
        )
    print(
        f"throughput: {report['routes']['all']['requests_per_s']} requests/s; server CPU "
        f"{report['server_cpu_ms_per_request']} ms per request"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--think-ms", type=float, default=0.0)
    parser.add_argument("--executor", choices=["ray", "local"], default="ray")
    parser.add_argument(
        "--runner",
        choices=["process", "embedded"],
        default="process",
        help="where the server runs jobs (embedded: in the API process, the old setup)",
    )
    parser.add_argument(
        "--http",
        choices=["auto", "h11"],
        default="auto",
        help="the server's HTTP stack (h11: pure-Python parser on asyncio, the baseline)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.clients, args.seconds, args.think_ms, args.executor, args.runner, args.http)
    print(json.dumps(report, indent=2)) if args.json else print_report(report)


if __name__ == "__main__":
    main()
