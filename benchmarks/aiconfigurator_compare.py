"""paretune side by side with NVIDIA AIConfigurator on the same serving scenarios.

For each scenario (model, GPUs, ISL/OSL, TTFT and TPOT SLOs, backend) this runs

- AIConfigurator's own search, ``aiconfigurator cli default`` (aggregated vs disaggregated,
  its systems and perf database), installed from the package registry into a virtual
  environment of its own (``.bench-venvs/aiconfigurator``: its pinned dependencies must not
  touch paretune's), reading its result CSVs rather than its terminal tables;
- paretune's full search of the same scenario through the real tuner path (``paretune
  tune``'s ``run_local_job``: the job stored in a SQLite file, the in-process executor),

and prints each tool's recommendation per serving mode with its predicted TTFT, TPOT,
tokens/s/GPU and tokens/s/user, the wall time of each search and their ratio (measured in the
same run, on the same machine). It also scores AIConfigurator's pick with paretune's model, so
a difference in the recommendation can be told apart from a difference in the predictions. The
figures are written to ``docs/aiconfigurator.md``.

    .venv/bin/python -m benchmarks.aiconfigurator_compare [--only NAME] [--no-docs]
        [--executor local|ray]

Both tools optimise tokens/s/GPU under the SLOs, each choosing the concurrency itself
(AIConfigurator sweeps batch sizes; paretune searches ``max_batch_size`` caps at maximum
throughput). The numeric format of each scenario is fixed to AIConfigurator's (it takes it
from the checkpoint), so paretune searches the same format and backend.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import venv
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_DIR = ROOT / ".bench-venvs" / "aiconfigurator"
AIC_PACKAGE = "aiconfigurator==0.12.0"
AIC_TIMEOUT_S = 1800.0  # one scenario's search; its defaults take about a minute here
DOC = ROOT / "docs" / "aiconfigurator.md"
COMMAND = ".venv/bin/python -m benchmarks.aiconfigurator_compare"


@dataclass(frozen=True)
class Scenario:
    """One serving problem, spelled for both tools."""

    name: str
    aic_model: str  # AIConfigurator's --model (a checkpoint it ships the config.json of)
    model: str  # paretune catalog id
    aic_system: str
    gpu: str  # paretune GPU id
    backend: str
    weight_dtype: str  # the checkpoint's format, as AIConfigurator reads it
    kv_dtype: str
    num_gpus: int = 8
    isl: int = 4000
    osl: int = 500
    ttft_ms: float = 600.0
    tpot_ms: float = 50.0


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "Qwen3-32B FP8, 8x H200, TensorRT-LLM",
        "Qwen/Qwen3-32B-FP8",
        "qwen3-32b",
        "h200_sxm",
        "h200-141gb",
        "trtllm",
        "fp8",
        "fp8",
    ),
    Scenario(
        "Llama-3.1-70B BF16, 8x H100, vLLM",
        "meta-llama/Meta-Llama-3.1-70B",
        "llama-3.1-70b",
        "h100_sxm",
        "h100-sxm-80gb",
        "vllm",
        "bf16",
        "bf16",
    ),
    Scenario(
        "Qwen3-235B-A22B FP8, 8x H200, TensorRT-LLM",
        "Qwen/Qwen3-235B-A22B-FP8",
        "qwen3-235b-a22b",
        "h200_sxm",
        "h200-141gb",
        "trtllm",
        "fp8",
        "fp8",
    ),
)


@dataclass
class Pick:
    """One tool's best configuration of one serving mode, with its predicted figures."""

    mode: str  # agg / disagg
    config: str
    ttft_ms: float
    tpot_ms: float
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float
    concurrency: float | None = None
    paretune_view: str = ""  # paretune's estimate of this configuration (AIConfigurator's picks)


@dataclass
class ToolRun:
    """What one tool's search of one scenario gave."""

    wall_s: float
    picks: list[Pick] = field(default_factory=list)
    search_s: float | None = None  # the tool's own count, when it prints one
    error: str | None = None
    notes: list[str] = field(default_factory=list)


# -- AIConfigurator ------------------------------------------------------------------------


def aic_bin() -> Path:
    return VENV_DIR / "bin" / "aiconfigurator"


def ensure_aiconfigurator() -> str:
    """Create the venv and install AIConfigurator on first use; return its version."""
    if not aic_bin().exists():
        print(f"installing {AIC_PACKAGE} into {VENV_DIR} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
        pip = [str(VENV_DIR / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, AIC_PACKAGE], check=True)
    out = subprocess.run(
        [str(VENV_DIR / "bin" / "python"), "-m", "pip", "show", "aiconfigurator"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"^Version:\s*(\S+)", out, re.MULTILINE)
    return found.group(1) if found else "unknown"


def aic_command(s: Scenario, save_dir: Path) -> list[str]:
    """AIConfigurator's default search (agg vs disagg) at its default sweep for ``s``."""
    return [
        str(aic_bin()),
        "cli",
        "default",
        "--model",
        s.aic_model,
        "--system",
        s.aic_system,
        "--backend",
        s.backend,
        "--total-gpus",
        str(s.num_gpus),
        "--isl",
        str(s.isl),
        "--osl",
        str(s.osl),
        "--ttft",
        f"{s.ttft_ms:g}",
        "--tpot",
        f"{s.tpot_ms:g}",
        "--save-dir",
        str(save_dir),
        "--no-color",
    ]


def _float(row: dict[str, str], key: str) -> float:
    value = row.get(key, "")
    return float(value) if value not in ("", None) else float("nan")


def _int(row: dict[str, str], key: str, default: int = 1) -> int:
    value = row.get(key, "")
    return int(float(value)) if value not in ("", None) else default


def _aic_config(row: dict[str, str], mode: str, total_gpus: int) -> tuple[str, dict[str, Any]]:
    """A readable spelling of an AIConfigurator result row and its paretune equivalent."""
    if mode == "agg":
        tp, pp, dp, ep = (_int(row, k) for k in ("tp", "pp", "dp", "moe_ep"))
        per_worker = tp * pp * dp
        replicas = max(1, total_gpus // per_worker)
        bs = _int(row, "bs")
        text = f"{replicas}x worker {row.get('parallel', '')} (bs {bs} per worker)"
        fields: dict[str, Any] = {
            "mode": "aggregated",
            "tp": tp,
            "pp": pp,
            "attention_dp": dp,
            "ep": ep,
            "replicas": replicas,
            "max_batch_size": bs * dp,
        }
        return text, fields
    pools: dict[str, dict[str, int]] = {}
    parts = []
    for tag, name in (("(p)", "prefill"), ("(d)", "decode")):
        pool = {k: _int(row, f"{tag}{k}") for k in ("tp", "pp", "dp", "moe_ep", "workers")}
        pools[name] = pool
        parts.append(f"{name} {pool['workers']}x {row.get(f'{tag}parallel', '')}")
    per_replica = sum(p["tp"] * p["pp"] * p["dp"] * p["workers"] for p in pools.values())
    replicas = max(1, total_gpus // max(1, per_replica))
    text = " + ".join(parts) + f" (decode bs {_int(row, '(d)bs')} per worker)"
    if replicas > 1:
        text = f"{replicas}x [{text}]"
    fields = {"mode": "disaggregated"}
    for name, p in pools.items():
        fields[name] = {
            "tp": p["tp"],
            "pp": p["pp"],
            "attention_dp": p["dp"],
            "ep": p["moe_ep"],
            "workers": p["workers"] * replicas,
        }
    fields["decode"]["max_batch_size"] = _int(row, "(d)bs") * pools["decode"]["dp"]
    return text, fields


def _aic_pick(row: dict[str, str], mode: str, s: Scenario) -> tuple[Pick, dict[str, Any]]:
    text, fields = _aic_config(row, mode, s.num_gpus)
    per_gpu = _float(row, "tokens/s/gpu_cluster")
    if per_gpu != per_gpu:  # older releases have no cluster-level column
        per_gpu = _float(row, "tokens/s/gpu")
    replicas = fields.get("replicas") or 1
    if mode == "disagg":
        per_replica = sum(
            _int(row, f"{t}tp")
            * _int(row, f"{t}pp")
            * _int(row, f"{t}dp")
            * _int(row, f"{t}workers")
            for t in ("(p)", "(d)")
        )
        replicas = max(1, s.num_gpus // max(1, per_replica))
    pick = Pick(
        mode=mode,
        config=text,
        ttft_ms=_float(row, "ttft"),
        tpot_ms=_float(row, "tpot"),
        tokens_per_s_per_gpu=per_gpu,
        tokens_per_s_per_user=_float(row, "tokens/s/user"),
        concurrency=_float(row, "concurrency") * replicas,
    )
    return pick, fields


def parse_aic_results(save_dir: Path, s: Scenario) -> list[tuple[Pick, dict[str, Any]]]:
    """The top configuration of each mode from AIConfigurator's ``best_config_topn.csv``
    (rows ranked by tokens/s/GPU among those meeting the SLOs)."""
    out = []
    for mode in ("agg", "disagg"):
        files = sorted(save_dir.rglob(f"{mode}/best_config_topn.csv"))
        if not files:
            continue
        with files[-1].open() as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            out.append(_aic_pick(rows[0], mode, s))
    return out


def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() and "[W]" not in ln]
    return (errors or lines or ["no output"])[-1][:300]


def run_aiconfigurator(s: Scenario, work: Path) -> tuple[ToolRun, list[dict[str, Any]]]:
    save_dir = work / "aic"
    save_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NO_COLOR": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            aic_command(s, save_dir),
            capture_output=True,
            text=True,
            timeout=AIC_TIMEOUT_S,
            env=env,
            cwd=work,
        )
    except subprocess.TimeoutExpired:
        wall = time.perf_counter() - start
        return ToolRun(wall, error=f"no result within {AIC_TIMEOUT_S:.0f} s"), []
    wall = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (work / "aic.log").write_text(log)
    run = ToolRun(wall)
    found = re.search(r"All experiments completed in ([0-9.]+) seconds", log)
    run.search_s = float(found.group(1)) if found else None
    parsed = parse_aic_results(save_dir, s)
    run.picks = [p for p, _ in parsed]
    if proc.returncode != 0 or not parsed:
        run.error = f"exit {proc.returncode}: {_last_error(log)}"
    if "large-EP exploration is OFF" in log:
        run.notes.append("AIConfigurator: large expert parallelism off (no all-to-all data)")
    return run, [f for _, f in parsed]


# -- paretune ------------------------------------------------------------------------------


def paretune_doc(s: Scenario) -> dict[str, Any]:
    """The inference job of ``s``: maximum throughput under the SLOs, every knob searched
    except the backend and the checkpoint's formats."""
    return {
        "kind": "inference",
        "name": f"aiconfigurator-compare {s.name}",
        "model": s.model,
        "cluster": {"gpu": s.gpu, "num_gpus": s.num_gpus},
        "workload": {
            "input_len": s.isl,
            "output_len": s.osl,
            "ttft_ms": s.ttft_ms,
            "tpot_ms": s.tpot_ms,
        },
        "objectives": ["max:output_tokens_per_s_per_gpu", "max:tokens_per_s_per_user"],
        "space": {
            "backend": [s.backend],
            "weight_dtype": [s.weight_dtype],
            "kv_dtype": [s.kv_dtype],
        },
    }


def describe(config: dict[str, Any], num_gpus: int) -> str:
    """A paretune configuration in the same words as AIConfigurator's."""

    def shape(c: dict[str, Any]) -> str:
        text = f"tp{c.get('tp', 1)}pp{c.get('pp', 1)}"
        if c.get("attention_dp", 1) > 1 or c.get("ep", 1) > 1:
            text += f"dp{c.get('attention_dp', 1)}ep{c.get('ep', 1)}"
        return text

    if config.get("mode") == "disaggregated":
        pre, dec = config["prefill"], config["decode"]
        cap = dec.get("max_batch_size")
        bs = f"decode bs {cap} per worker" if cap else "decode bs memory-bound"
        return (
            f"prefill {pre['workers']}x {shape(pre)} + decode {dec['workers']}x {shape(dec)} ({bs})"
        )
    per_worker = config.get("tp", 1) * config.get("pp", 1) * config.get("attention_dp", 1)
    workers = config.get("replicas") or num_gpus // per_worker
    cap = config.get("max_batch_size")
    bs = f"bs {cap} per worker" if cap else "bs memory-bound"
    return f"{workers}x worker {shape(config)} ({bs})"


def _pt_pick(mode: str, config: dict[str, Any], metrics: dict[str, float], gpus: int) -> Pick:
    return Pick(
        mode=mode,
        config=describe(config, gpus),
        ttft_ms=metrics["ttft_ms"],
        tpot_ms=metrics["tpot_ms"],
        tokens_per_s_per_gpu=metrics["output_tokens_per_s_per_gpu"],
        tokens_per_s_per_user=metrics["tokens_per_s_per_user"],
        # requests decoding at once (Little's law), comparable with AIConfigurator's count
        concurrency=metrics["output_tokens_per_s"] / metrics["tokens_per_s_per_user"],
    )


def run_paretune(s: Scenario, work: Path, executor: str = "local") -> ToolRun:
    """paretune's full search of ``s`` in this process (``executor``: local or ray), timed
    wall-clock."""
    from search_spaces.job_spec import parse_job_spec
    from tuner.local_job import run_local_job

    doc = paretune_doc(s)
    start = time.perf_counter()
    spec = parse_job_spec(doc)
    _, result = run_local_job(
        doc, spec, db_url=f"sqlite:///{work / 'paretune.db'}", executor_kind=executor
    )
    wall = time.perf_counter() - start
    run = ToolRun(wall, search_s=wall)
    run.notes.append(
        f"paretune: {result.plan.mode} search, {len(result.trials)} trials, {executor} executor"
    )
    rec = result.recommendation
    if rec is None:
        run.error = "no configuration fits"
        return run
    mode = "disagg" if rec.config.get("mode") == "disaggregated" else "agg"
    picks = [_pt_pick(mode, rec.config, rec.metrics, s.num_gpus)]
    other = rec.details.get("other_mode")
    if other:
        other_mode = "disagg" if other["mode"] == "disaggregated" else "agg"
        picks.append(_pt_pick(other_mode, other["config"], other["metrics"], s.num_gpus))
    run.picks = sorted(picks, key=lambda p: p.mode)
    if not rec.reason.startswith("highest"):
        run.notes.append(f"paretune: {rec.reason}")
    return run


def paretune_view(s: Scenario, fields: dict[str, Any], concurrency: float | None) -> str:
    """paretune's estimate of an AIConfigurator configuration at its concurrency."""
    from cost_models.inference import estimate_inference
    from search_spaces.catalog import load_model
    from search_spaces.inference_config import InferenceConfig
    from search_spaces.inference_space import InferenceSpace
    from search_spaces.specs import ClusterSpec
    from search_spaces.specs import InferenceWorkload

    try:
        model = load_model(s.model)
        cluster = ClusterSpec(gpu=s.gpu, num_gpus=s.num_gpus)
        load = None if concurrency is None or concurrency != concurrency else round(concurrency)
        workload = InferenceWorkload(input_len=s.isl, output_len=s.osl, concurrency=load)
        config = InferenceConfig.model_validate(
            {**fields, "backend": s.backend, "weight_dtype": s.weight_dtype, "kv_dtype": s.kv_dtype}
        )
        problems = InferenceSpace(model, cluster, workload).violations(config)
        if problems:
            return "not expressible: " + problems[0]
        est = estimate_inference(model, cluster, workload, config)
    except ValueError as exc:
        return f"not expressible: {exc}"
    fits = "" if est.fits else ", does not fit"
    return (
        f"TTFT {est.ttft_ms:.0f} ms, TPOT {est.tpot_ms:.1f} ms, "
        f"{est.output_tokens_per_s_per_gpu:.0f} tok/s/GPU, "
        f"{est.tokens_per_s_per_user:.1f} tok/s/user{fits}"
    )


# -- report --------------------------------------------------------------------------------


def _row(tool: str, p: Pick) -> str:
    conc = f"{p.concurrency:.0f}" if p.concurrency and p.concurrency == p.concurrency else "–"
    return (
        f"| {tool} | {p.mode} | {p.config} | {p.ttft_ms:.0f} | {p.tpot_ms:.1f} | "
        f"{p.tokens_per_s_per_gpu:.0f} | {p.tokens_per_s_per_user:.1f} | {conc} |"
    )


def scenario_section(s: Scenario, aic: ToolRun, pt: ToolRun) -> list[str]:
    lines = [
        f"### {s.name}",
        "",
        f"ISL {s.isl}, OSL {s.osl}, TTFT <= {s.ttft_ms:g} ms, TPOT <= {s.tpot_ms:g} ms, "
        f"{s.num_gpus} GPUs, backend {s.backend}, weights {s.weight_dtype}, KV {s.kv_dtype}.",
        "",
        "| tool | mode | configuration | TTFT ms | TPOT ms | tokens/s/GPU | tokens/s/user "
        "| concurrency |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [_row("AIConfigurator", p) for p in aic.picks]
    lines += [_row("paretune", p) for p in pt.picks]
    lines.append("")
    if aic.error:
        lines.append(f"AIConfigurator could not complete this scenario: {aic.error}")
        lines.append("")
    views = [(p.mode, p.paretune_view) for p in aic.picks if p.paretune_view]
    for mode, view in views:
        lines.append(f"- paretune's estimate of AIConfigurator's {mode} pick: {view}")
    for note in aic.notes + pt.notes:
        lines.append(f"- {note}")
    own = f" (its own search count: {aic.search_s:.1f} s)" if aic.search_s else ""
    lines.append(
        f"- wall time of the search: AIConfigurator {aic.wall_s:.1f} s{own}, "
        f"paretune {pt.wall_s:.2f} s"
    )
    if aic.picks:
        ratio = aic.wall_s / pt.wall_s
        own_ratio = ""
        if aic.search_s:
            own_ratio = f"; {aic.search_s / pt.wall_s:.0f}x against its own count"
        lines.append(f"- speed ratio (AIConfigurator / paretune): {ratio:.0f}x{own_ratio}")
    return lines + [""]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as fh:
        found = re.search(r"model name\s*:\s*(.+)", fh.read())
    if found:
        cpu = found.group(1).strip()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB"


def header(aic_version: str) -> list[str]:
    try:
        pt_version = metadata.version("paretune")
    except metadata.PackageNotFoundError:
        pt_version = "unknown"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "# paretune and NVIDIA AIConfigurator, side by side",
        "",
        f"Regenerated by `{COMMAND}` on {now}.",
        f"Machine: {machine()}, shared with other work (wall times are noisy; both tools ran "
        "in the same run, one after the other).",
        f"Versions: paretune {pt_version}, AIConfigurator {aic_version} (`{AIC_PACKAGE}` from "
        f"PyPI, in `{VENV_DIR.relative_to(ROOT)}`), Python {platform.python_version()}.",
        "",
        "Each tool runs its own full search of the scenario: AIConfigurator `cli default` "
        "(aggregated and disaggregated, its default sweep, its perf database for the system and "
        "backend), paretune's `tune` path (`run_local_job`, in-process executor, SQLite). Both "
        "rank by tokens/s/GPU under the SLOs and pick the concurrency themselves. For each "
        "mode the table shows the best configuration of each tool; AIConfigurator's "
        "concurrency is its batch size times its replicas, paretune's the requests decoding "
        "at once (total tokens/s over tokens/s/user). paretune's estimate of "
        "AIConfigurator's pick is listed below each table.",
        "",
        "The two tools mean different things by TTFT: AIConfigurator's comes from its model of "
        "the steps of one batch, paretune's is what a closed-loop client measures at that "
        "concurrency, including the wait behind the prompts that arrive with it (fitted on the "
        "measured TTFT of `inference_latency_measured.csv`, see `docs/accuracy.md`; "
        "AIConfigurator's own estimates miss those rows by a mean 41-49%). Under the same TTFT "
        "SLO paretune therefore keeps smaller batches, and scores AIConfigurator's large-batch "
        "picks well above the SLO.",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument("--no-docs", action="store_true", help=f"do not rewrite {DOC.name}")
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="paretune's executor (ray includes starting a local cluster in its wall time)",
    )
    args = parser.parse_args(argv)
    scenarios = [s for s in SCENARIOS if not args.only or args.only.lower() in s.name.lower()]
    if not scenarios:
        sys.exit(f"--only {args.only!r} matches no scenario; names: {[s.name for s in SCENARIOS]}")
    aic_version = ensure_aiconfigurator()
    lines = [*header(aic_version), "## Scenarios", ""]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="aic-compare-") as tmp:
        for i, s in enumerate(scenarios):
            work = Path(tmp) / f"s{i}"
            work.mkdir()
            print(f"== {s.name}: AIConfigurator ...", flush=True)
            aic, fields = run_aiconfigurator(s, work)
            for pick, f in zip(aic.picks, fields, strict=True):
                pick.paretune_view = paretune_view(s, f, pick.concurrency)
            print(f"== {s.name}: paretune ...", flush=True)
            pt = run_paretune(s, work, args.executor)
            section = scenario_section(s, aic, pt)
            print("\n".join(section), flush=True)
            lines += section
            if aic.picks:
                ratios.append(aic.wall_s / pt.wall_s)
    if ratios:
        summary = (
            f"Speed ratio over {len(ratios)} scenarios (AIConfigurator wall time / paretune "
            f"wall time): min {min(ratios):.0f}x, max {max(ratios):.0f}x."
        )
        print(summary)
        lines += ["## Summary", "", summary, ""]
    if not args.no_docs:
        DOC.write_text("\n".join(lines).rstrip() + "\n")
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
