"""Run the reliability and performance benchmarks and write docs/benchmarks.md.

    .venv/bin/python -m benchmarks.report [--quick] [--out docs/benchmarks.md]

Each benchmark runs in its own process (``--json``), so each starts its own Ray and server;
the figures land in one Markdown file with the machine they were measured on. ``--quick``
runs fewer seeds and shorter load phases (for a smoke test, not for the record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

CHECKPOINTS = ("25", "50", "100", "200")


def run_json(module: str, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", module, "--json", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    start = done.stdout.index("{")  # Ray may print a line before the report
    result: dict[str, Any] = json.loads(done.stdout[start:])
    return result


def machine() -> str:
    import optuna
    import ray

    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"Optuna {optuna.__version__}, Ray {ray.__version__}; load average "
        f"{load[0]:.1f} when the run started, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def load_section(runs: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> list[str]:
    """``runs``: the server as shipped; ``baselines``: the same server with its jobs run in
    the API process (``--runner embedded``), measured in the same run, think time by think
    time."""
    lines = [
        "## Read load while a job runs (`python -m benchmarks.load`)",
        "",
        "50 clients (threads of one process, one keep-alive connection each) against a real "
        "`paretune serve` on 127.0.0.1 with SQLite, while a sampled job (Ray executor) writes "
        "its trials; each client thinks 0.5-1.5 times the think time between requests (2 s is "
        "the dashboard's polling pace). The job runs in the runner process `paretune serve` "
        "starts beside its API, at a lower CPU priority (nice 10); finished jobs' trial pages, "
        "fronts and recommendations are served from a cache of serialised responses. Baseline, "
        "same run: the jobs in threads of the API process (`--runner embedded`, the setup "
        "before issue 7), where reads share the GIL with the job's sampler. Goal: p99 under "
        "100 ms, no errors.",
        "",
        "| think time | runner | seconds | requests/s | p50 ms | p99 ms | max ms | errors | "
        "job trials | server CPU ms/request |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run, base in zip(runs, baselines, strict=True):
        for label, measured in (("process", run), ("embedded (baseline)", base)):
            row = measured["routes"]["all"]
            lines.append(
                f"| {measured['think_ms']:g} ms | {label} | {measured['seconds']} | "
                f"{row['requests_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
                f"{row['max_ms']} | {row['errors']} | {measured['job_trials_after']} | "
                f"{measured.get('server_cpu_ms_per_request', '')} |"
            )
    lines += [
        "",
        "Server CPU is the API process's CPU time over the requests it answered (with the "
        "embedded runner it includes the job's work). The machine is shared: a load average "
        "above 2 means other work competed for its CPUs, which shows in p99 first.",
    ]
    lines += ["", "p99 of the baseline over p99 of the runner process (above 1: faster):", ""]
    lines += [
        "| think time | p99 ratio | p50 ratio |",
        "| --- | ---: | ---: |",
    ]
    for run, base in zip(runs, baselines, strict=True):
        ours, theirs = run["routes"]["all"], base["routes"]["all"]
        lines.append(
            f"| {run['think_ms']:g} ms | {theirs['p99_ms'] / max(ours['p99_ms'], 0.1):.1f} | "
            f"{theirs['p50_ms'] / max(ours['p50_ms'], 0.1):.1f} |"
        )
    lines += ["", "Per route, at the dashboard's pace (2 s think time):", ""]
    lines += [
        "| route | requests | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in runs[-1]["routes"].items():
        lines.append(
            f"| {name} | {row['requests']} | {row['p50_ms']} | {row['p99_ms']} | {row['errors']} |"
        )
    return lines


def efficiency_section(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Search efficiency (`python -m benchmarks.search_efficiency`)",
        "",
        "Hypervolume of the feasible front after n trials over the hypervolume of the exhaustive "
        "front (objectives normalised to [0, 1] over the feasible points, reference point 1.1); "
        "mean over seeds, worst seed in brackets. Every sampler runs paretune's real sampled "
        "search (batched ask/tell in the spec's default batch, `Budget.batch`: 8 for 200 "
        "trials; invalid points pruned before evaluation, repeats reused); `auto, batch 32` is "
        "the old default batch. Goal: the default reaches 0.99 within 50 trials.",
    ]
    for name, spec in report["specs"].items():
        lines += [
            "",
            f"**{name}**: {spec['valid_points']} valid points, {spec['feasible']} feasible, "
            f"{spec['front']} on the front.",
            "",
            "| sampler | seeds | " + " | ".join(f"{n} trials" for n in CHECKPOINTS) + " |",
            "| --- | ---: | " + " | ".join("---:" for _ in CHECKPOINTS) + " |",
        ]
        for sampler, row in spec["samplers"].items():
            cells = [
                f"{row['mean'][n]:.3f} ({row['worst'][n]:.3f})" if n in row["mean"] else ""
                for n in CHECKPOINTS
            ]
            lines.append(f"| {sampler} | {row['seeds']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"### Tuner overhead per trial ({report['overhead_spec']}, {report['trials']} trials)",
        "",
        "Plain in-process Optuna (ask/tell in the same batches, same objective, same sampler "
        "and seed) "
        "against paretune's `run_search` with the Ray executor and the SQLite database sink, "
        "in the same process and run (Ray started and its workers warmed first); both divide "
        "by the distinct configurations evaluated (plain Optuna answers a repeat from a "
        "dictionary, as paretune reuses it). Goal: under 5 ms.",
        "",
        "| sampler | Optuna ms/trial | paretune ms/trial | overhead ms/trial | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for sampler, row in report["overhead"].items():
        lines.append(
            f"| {sampler} | {row['optuna_ms_per_trial']} | {row['paretune_ms_per_trial']} | "
            f"{row['overhead_ms_per_trial']} | {row['ratio']} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    header = machine()
    started = time.monotonic()
    seconds = 8 if args.quick else 30
    loads, baselines = [], []
    for think in ("0", "250", "2000"):
        common = ("--seconds", str(seconds), "--think-ms", think)
        loads.append(run_json("benchmarks.load", *common))
        baselines.append(run_json("benchmarks.load", *common, "--runner", "embedded"))
    seeds = ["--seeds", "2", "--overhead-repeats", "1"] if args.quick else []
    efficiency = run_json("benchmarks.search_efficiency", *seeds)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make benchmarks` (`python -m benchmarks.report`); each section names the "
        "script that prints its figures on its own. Fault tolerance, fuzzing and security are "
        "tested, not benchmarked: see the tests named in the last section.",
        "",
        f"Measured on: {header}. Took {time.monotonic() - started:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} at the end (the machine is shared: a load above 2 means "
        "other work competed for its 2 CPUs).",
        "",
        *load_section(loads, baselines),
        "",
        *efficiency_section(efficiency),
        "",
        *Path(__file__).with_name("report_notes.md").read_text().splitlines(),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
