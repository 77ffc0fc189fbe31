"""How fast does each sampler find the Pareto front, and what does the tuner cost per trial?

1. Hypervolume. On real specs whose valid spaces are small enough to evaluate exhaustively,
   every point is evaluated once (the exhaustive front is the truth); then each sampler
   paretune offers runs the real sampled search (``run_search``: batched ask/tell, invalid
   points pruned, repeats reused, the stall fallback) for ``--trials`` trials with several
   seeds. For the first 25/50/100/200 trials, the hypervolume of their feasible front is
   divided by the exhaustive front's. Objectives are normalised per spec to [0, 1] over the
   feasible points (0 = best), the reference point is (1.1, 1.1).

2. Overhead. The same objective (decode, validity rules, the analytical model, constraints)
   run by plain in-process Optuna (ask/tell in the same batches) and by paretune's tuner with Ray
   dispatch and the SQLite database (``run_search`` + ``RayExecutor`` + ``DatabaseSink``),
   same sampler, same seed, in the same process: milliseconds per trial and their ratio.

    .venv/bin/python -m benchmarks.search_efficiency [--seeds 5] [--trials 200]
        [--samplers auto,tpe,nsga2,gp,random] [--json]

Goal (issue 7): the default sampler reaches 99% of the exhaustive hypervolume within 50
trials; tuner overhead under 5 ms per trial.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from results.records import TrialRecord
from search_spaces.job_spec import parse_job_spec
from search_spaces.objectives import Objective
from tuner.dispatch import LocalExecutor
from tuner.driver import ListSink
from tuner.driver import run_search
from tuner.pareto import pareto_indices

CHECKPOINTS = (25, 50, 100, 200)
REFERENCE = 1.1
BASE = {"budget": {"exhaustive_limit": 0}}
SPECS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b / 16 H100": {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
        "workload": {"seq_len": 4096, "global_batch_size": 256},
    },
    "mixtral-8x7b / 32 H100": {
        "model": "mixtral-8x7b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 32},
        "workload": {"seq_len": 4096, "global_batch_size": 512},
    },
    "llama-3.1-70b / 64 A100": {
        "model": "llama-3.1-70b",
        "cluster": {"gpu": "a100-80gb", "num_gpus": 64},
        "workload": {"seq_len": 4096, "global_batch_size": 1024},
    },
    "serving llama-3.1-70b / 8 H200": {  # examples/llama-3.1-70b-h200-serving.yaml
        "kind": "inference",
        "model": "llama-3.1-70b",
        "cluster": {"gpu": "h200-141gb", "num_gpus": 8},
        "workload": {"input_len": 4000, "output_len": 500, "ttft_ms": 1000, "tpot_ms": 20},
        "objectives": ["min:cost_per_million_tokens_usd", "max:tokens_per_s_per_user"],
    },
}


def losses(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[list[float]]:
    """Loss vectors (smaller is better) of the feasible completed trials."""
    return [
        [o.loss(t.metrics[o.metric]) for o in objectives]
        for t in trials
        if t.state == "complete" and t.feasible
    ]


class Normaliser:
    """Maps loss vectors to [0, 1] per objective over the exhaustive feasible set."""

    def __init__(self, everything: list[list[float]]) -> None:
        self.low = [min(col) for col in zip(*everything, strict=True)]
        self.high = [max(col) for col in zip(*everything, strict=True)]

    def __call__(self, point: Sequence[float]) -> list[float]:
        return [
            (x - lo) / (hi - lo) if hi > lo else 0.0
            for x, lo, hi in zip(point, self.low, self.high, strict=True)
        ]


def hypervolume_2d(points: Sequence[Sequence[float]], reference: float = REFERENCE) -> float:
    """Area dominated by ``points`` (both minimised) up to (reference, reference)."""
    staircase: list[tuple[float, float]] = []
    for x, y in sorted((p[0], p[1]) for p in points if p[0] < reference and p[1] < reference):
        if not staircase or y < staircase[-1][1]:
            staircase.append((x, y))
    if not staircase:
        return 0.0
    edges = [x for x, _ in staircase[1:]] + [reference]
    return sum((nx - x) * (reference - y) for (x, y), nx in zip(staircase, edges, strict=True))


def check_hypervolume(points: list[list[float]]) -> None:
    """Cross-check against Optuna's own (private) hypervolume routine when it is there."""
    try:
        import numpy as np
        from optuna._hypervolume import compute_hypervolume
    except ImportError:  # pragma: no cover - a later Optuna may move it
        return
    ours = hypervolume_2d(points)
    theirs = compute_hypervolume(np.array(points), np.array([REFERENCE, REFERENCE]))
    assert abs(ours - theirs) < 1e-9, (ours, theirs)


def spec_for(
    doc: dict[str, Any], sampler: str, seed: int, trials: int, batch: int | None = None
) -> Any:
    """A sampled job (exhaustive_limit 0); ``batch`` None leaves the spec's default batch."""
    budget: dict[str, Any] = {"trials": trials, "exhaustive_limit": 0}
    if batch is not None:
        budget["batch_size"] = batch
    return parse_job_spec({**doc, "budget": budget, "sampler": {"name": sampler, "seed": seed}})


def exhaustive(doc: dict[str, Any]) -> tuple[list[TrialRecord], list[Objective]]:
    spec = parse_job_spec({**doc, "budget": {"exhaustive_limit": 1_000_000}})
    result = run_search(spec, LocalExecutor(), ListSink())
    assert result.plan.mode == "exhaustive"
    return result.trials, spec.objectives


def ratios(
    trials: list[TrialRecord], objectives: list[Objective], norm: Normaliser, best: float
) -> dict[int, float]:
    """Hypervolume of the first n trials (by number) over the exhaustive one, per checkpoint."""
    ordered = sorted(trials, key=lambda t: t.number)
    out = {}
    for n in CHECKPOINTS:
        if n <= len(ordered):
            points = [norm(p) for p in losses(ordered[:n], objectives)]
            out[n] = hypervolume_2d(points) / best
    return out


class Variant:
    """One row of the table: a sampler, the batch size it is asked in, seeds, trials, and a
    time limit per run (the search stops there; later checkpoints are left empty)."""

    def __init__(
        self, label: str, sampler: str, batch: int | None, seeds: int, trials: int, limit_s: float
    ) -> None:
        self.label, self.sampler, self.batch = label, sampler, batch
        self.seeds, self.trials, self.limit_s = seeds, trials, limit_s


class DeadlineSink(ListSink):
    def __init__(self, limit_s: float) -> None:
        super().__init__()
        self.deadline = time.monotonic() + limit_s

    def should_stop(self) -> bool:
        return time.monotonic() > self.deadline


def sampler_runs(doc: dict[str, Any], variants: list[Variant]) -> dict[str, Any]:
    everything, objectives = exhaustive(doc)
    feasible = losses(everything, objectives)
    norm = Normaliser(feasible)
    points = [norm(p) for p in feasible]
    check_hypervolume(points)
    best = hypervolume_2d(points)
    rows: dict[str, Any] = {}
    for v in variants:
        per_seed, seconds = [], []
        for seed in range(v.seeds):
            spec = spec_for(doc, v.sampler, seed, v.trials, v.batch)
            start = time.perf_counter()
            result = run_search(spec, LocalExecutor(), DeadlineSink(v.limit_s))
            seconds.append(time.perf_counter() - start)
            per_seed.append(ratios(result.trials, objectives, norm, best))
        rows[v.label] = {
            "seeds": v.seeds,
            "mean": {n: statistics.fmean(r[n] for r in per_seed) for n in min(per_seed, key=len)},
            "worst": {n: min(r[n] for r in per_seed) for n in min(per_seed, key=len)},
            "seconds_per_run": statistics.fmean(seconds),
        }
    front = len(pareto_indices(feasible))
    return {"valid_points": len(everything), "feasible": len(feasible), "front": front,
            "samplers": rows}  # fmt: skip


def plain_optuna(doc: dict[str, Any], sampler: str, trials: int) -> tuple[float, int]:
    """Seconds and distinct configurations evaluated by plain in-process Optuna ask/tell on
    the same objective, with the sampler paretune builds for the job (same class, arguments,
    seed) asked in the same batches (``Budget.batch``): a sampler's own cost can depend on
    how often it is told (the valid-set sampler refits once per batch), so both sides must
    batch alike for the difference to be the tuner's machinery.

    Counted like paretune's trials: a repeated configuration returns its first values (a
    dictionary look-up) and is not counted again, invalid points are pruned, so both sides
    divide by the same thing: new configurations evaluated."""
    from tuner.driver import build_space
    from tuner.kinds import evaluator_for
    from tuner.study import make_sampler
    from tuner.study import make_study

    spec = spec_for(doc, sampler, 0, trials)
    space, evaluate = build_space(spec), evaluator_for(spec)
    dists = space.to_optuna()
    batch = spec.budget.batch()
    study = make_study(spec.objectives, make_sampler(spec.sampler, batch, space)[0])
    seen: dict[str, tuple[list[float], dict[str, float]]] = {}
    start = time.perf_counter()
    for _ in range(trials * 50):  # a bound, should the sampler only repeat itself
        if len(seen) >= trials:
            break
        for trial in [study.ask(dists) for _ in range(batch)]:
            config = space.decode(trial.params)
            if space.violations(config):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            key = config.key()
            if key not in seen:
                outcome = evaluate(spec, config)
                values = [outcome.metrics[o.metric] for o in spec.objectives]
                seen[key] = (values, outcome.constraints)
            values, constraints = seen[key]
            for name, value in constraints.items():
                trial.set_constraint(name, float(value))
            study.tell(trial, values)
    return time.perf_counter() - start, len(seen)


def paretune_tuner(
    doc: dict[str, Any], sampler: str, trials: int, executor: Any
) -> tuple[float, int]:
    """Seconds and trials of ``run_search`` with Ray dispatch and an SQLite DatabaseSink."""
    from results.db import make_engine
    from results.db import make_session_factory
    from results.db import session_scope
    from results.db import upgrade_to_head
    from results.repository import JobRepository
    from tuner.runner import DatabaseSink

    spec = spec_for(doc, sampler, 0, trials)
    with tempfile.TemporaryDirectory(prefix="pt-overhead-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'paretune.db'}")
        upgrade_to_head(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            job = JobRepository(session).create_job(spec.model_dump(mode="json"), "b", "training")
        start = time.perf_counter()
        result = run_search(spec, executor, DatabaseSink(factory, job.id, spec.objectives))
        seconds = time.perf_counter() - start
        engine.dispose()
    return seconds, len(result.trials)


def overhead(doc: dict[str, Any], samplers: list[str], trials: int, repeats: int) -> dict[str, Any]:
    from tuner.dispatch import RayExecutor

    executor = RayExecutor()  # started once per process, before any timing
    paretune_tuner(doc, "random", 64, executor)  # warm Ray's workers (imports, first tasks)
    rows = {}
    for name in samplers:
        plain = [plain_optuna(doc, name, trials) for _ in range(repeats)]
        ours = [paretune_tuner(doc, name, trials, executor) for _ in range(repeats)]
        plain_ms = statistics.median(s / n for s, n in plain) * 1000
        ours_ms = statistics.median(s / n for s, n in ours) * 1000
        rows[name] = {
            "optuna_ms_per_trial": round(plain_ms, 2),
            "paretune_ms_per_trial": round(ours_ms, 2),
            "overhead_ms_per_trial": round(ours_ms - plain_ms, 2),
            "ratio": round(ours_ms / plain_ms, 2),
        }
    return rows


def print_report(report: dict[str, Any]) -> None:
    head = "".join(f"{n:>9}" for n in CHECKPOINTS)
    for name, spec in report["specs"].items():
        print(
            f"\n{name}: {spec['valid_points']} valid points, {spec['feasible']} feasible, "
            f"{spec['front']} on the exhaustive front"
        )
        print("  hypervolume / exhaustive hypervolume after n trials: mean over seeds (worst)")
        print(f"  {'sampler':16}{head}   seeds  s/run")
        for sampler, row in spec["samplers"].items():
            mean = "".join(f"{row['mean'][n]:9.4f}" if n in row["mean"] else " " * 9
                           for n in CHECKPOINTS)  # fmt: skip
            worst = "".join(f"{row['worst'][n]:9.4f}" if n in row["worst"] else " " * 9
                            for n in CHECKPOINTS)  # fmt: skip
            print(f"  {sampler:16}{mean}   {row['seeds']:>5}  {row['seconds_per_run']:.1f}")
            print(f"  {'  (worst)':16}{worst}")
    print(
        f"\nTuner overhead per trial, {report['overhead_spec']}, {report['trials']} trials: plain "
        "in-process Optuna (ask/tell, same batches) against paretune (run_search, Ray, "
        "SQLite), same sampler and seed, measured in this run; ms per new configuration"
    )
    print(f"  {'sampler':10}{'optuna ms':>11}{'paretune ms':>13}{'overhead ms':>13}{'ratio':>7}")
    for sampler, row in report["overhead"].items():
        print(
            f"  {sampler:10}{row['optuna_ms_per_trial']:>11}{row['paretune_ms_per_trial']:>13}"
            f"{row['overhead_ms_per_trial']:>13}{row['ratio']:>7}"
        )


def variants(args: argparse.Namespace) -> list[Variant]:
    out = []
    for name in args.samplers.split(","):
        if name == "gp":  # minutes per batch of asks: one seed, a time limit
            out.append(Variant("gp", "gp", None, args.gp_seeds, args.trials, args.gp_seconds))
        else:  # the spec's default batch (Budget.batch: 8 for 200 trials)
            out.append(Variant(name, name, None, args.seeds, args.trials, 3600))
    for batch in (int(b) for b in args.auto_batches.split(",") if b):
        label = f"auto, batch {batch}"
        out.append(Variant(label, "auto", batch, args.seeds, args.trials, 3600))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--samplers", default="auto,tpe,nsga2,random,gp")
    parser.add_argument("--gp-seeds", type=int, default=1)
    parser.add_argument("--gp-seconds", type=float, default=120, help="per GP run")
    parser.add_argument(
        "--auto-batches", default="32", help="also run auto asked in these (32: the old default)"
    )
    parser.add_argument("--specs", default=",".join(SPECS), help="names of SPECS, comma-separated")
    parser.add_argument("--overhead-repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    specs = {name: sampler_runs(SPECS[name], variants(args)) for name in args.specs.split(",")}
    first = next(iter(SPECS))
    report = {
        "seeds": args.seeds,
        "trials": args.trials,
        "specs": specs,
        "overhead_spec": first,
        "overhead": overhead(
            SPECS[first], ["random", "tpe", "auto"], args.trials, args.overhead_repeats
        ),
    }
    print(json.dumps(report, indent=2)) if args.json else print_report(report)


if __name__ == "__main__":
    main()
