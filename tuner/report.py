"""Terminal and file output of a finished search (the CLI's `tune`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from search_spaces.config import flatten_config
from tuner.driver import SearchResult
from tuner.hybrid import describe as describe_hybrid
from tuner.kinds import AnyJobSpec
from tuner.kinds import kind_of

KNOB_COLUMNS = {  # knob -> short column header, so the table fits an 80-column terminal
    "tp": "tp",
    "pp": "pp",
    "cp": "cp",
    "ep": "ep",
    "vpp": "vpp",
    "micro_batch_size": "mbs",
    "sharding": "shard",
    "recompute": "recomp",
    "sequence_parallel": "sp",
    "dtype": "dtype",
}
METRIC_HEADERS = {
    "tokens_per_s_per_gpu": "tok/s/gpu",
    "tokens_per_s": "tok/s",
    "step_time_s": "step s",
    "mfu": "mfu",
    "memory_per_gpu_gib": "GiB/gpu",
    "cost_per_million_tokens_usd": "$/Mtok",
}


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


def _number(value: float) -> str:
    """Compact, fixed-point figures (no exponents) for a narrow terminal."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def varying_knobs(configs: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Knobs that differ across ``configs`` (table columns) and the ones fixed for all."""
    varying, fixed = [], {}
    knobs = list(dict.fromkeys(k for c in configs for k in c))
    for knob in knobs:
        values = {str(c.get(knob)) for c in configs}
        if len(values) > 1:
            varying.append(knob)
        elif configs:
            fixed[knob] = configs[0].get(knob)
    return varying, fixed


def print_front(console: Console, spec: AnyJobSpec, job_id: str, result: SearchResult) -> None:
    """The Pareto table (knobs and objectives) and the recommendation with its reason."""
    plan = result.plan
    feasible = sum(1 for t in result.trials if t.feasible)
    console.print(
        f"job {job_id}: {plan.mode} search, {len(result.trials)} configurations evaluated "
        f"({feasible} fit), {len(result.front)} on the Pareto front"
    )
    flat = {t.number: flatten_config(t.config, sep=".") for t in result.front}
    varying, fixed = varying_knobs(list(flat.values()))
    table = Table(title="Pareto front (* = recommended)", pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    for knob in varying:
        table.add_column(KNOB_COLUMNS.get(knob, knob), no_wrap=True)
    for obj in spec.objectives:
        header = METRIC_HEADERS.get(obj.metric, obj.metric)
        table.add_column(f"{obj.direction} {header}", justify="right", no_wrap=True)
    rec_number = result.recommendation.trial_number if result.recommendation else None
    for t in result.front:
        marker = "*" if t.number == rec_number else ""
        row = [f"{t.number}{marker}"] + [_cell(flat[t.number].get(k)) for k in varying]
        row += [_number(t.metrics[o.metric]) for o in spec.objectives]
        table.add_row(*row)
    console.print(table)
    if fixed:
        console.print(
            "same on every front point: " + ", ".join(f"{k}={v}" for k, v in fixed.items())
        )
    if "hybrid" in result.summary:  # predicted vs measured of the profiled front points
        console.print(describe_hybrid(result.summary["hybrid"]), highlight=False)
    rec = result.recommendation
    if rec is None:
        console.print("[bold red]no configuration fits in memory and meets the limits[/]")
        return
    console.print(f"[bold]recommended[/] (trial {rec.trial_number}): {rec.config}")
    console.print(f"  why: {rec.reason}")
    console.print("  " + ", ".join(f"{k}={v:.4g}" for k, v in rec.metrics.items()))


def write_outputs(out: Path, spec: AnyJobSpec, result: SearchResult) -> list[Path]:
    """front.json, trials.json and the recommendation in every launch format."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    front = [t.model_dump(mode="json") for t in result.front]
    (out / "front.json").write_text(json.dumps(front, indent=2) + "\n")
    written.append(out / "front.json")
    if result.recommendation:
        rec = result.recommendation
        kind = kind_of(spec)
        for filename, exporter in kind.exporters.values():
            text = exporter(spec, kind.parse_config(rec.config), rec.metrics)
            (out / filename).write_text(text)
            written.append(out / filename)
        (out / "reason.txt").write_text(rec.reason + "\n")
    return written
