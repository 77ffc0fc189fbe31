"""Accuracy of the serving model against the published serving measurements.

``inference_report_sections(reference_dir)`` returns markdown sections for ``docs/accuracy.md``;
``python -m cost_models.accuracy.inference [REFERENCE_DIR]`` prints them. Per group of rows
(backend, system, model, mode) they give the row count and the median and 90th-percentile
absolute error of TTFT and TPOT (``inference_latency_measured.csv``) or of the maximum output
throughput (``inference_measured.csv``), with the factors stored in ``inference_data.yaml``
(in-sample) and leave-one-group-out: the backend's factors refitted without the group, then
scored on it, which is what a model or system outside the table would see. Rows the model
cannot express are counted with their reasons.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cost_models.accuracy.inference_fit import Prepared
from cost_models.accuracy.inference_fit import fit
from cost_models.accuracy.inference_fit import prepare
from cost_models.accuracy.inference_fit import prior_calibration
from cost_models.accuracy.inference_fit import subset
from cost_models.accuracy.inference_rows import ReferenceCase
from cost_models.accuracy.inference_rows import latency_cases
from cost_models.accuracy.inference_rows import throughput_cases
from cost_models.inference_params import backend_profile
from cost_models.inference_serving import compose

BACKENDS = ("vllm", "sglang", "trtllm")
TARGETS = {"ttft": 25.0, "tpot": 12.0, "tps": 15.0}  # median absolute error, percent (issue 4)
AICONFIGURATOR = "AIConfigurator misses these rows by a mean 41-49% on TTFT and 17-20% on TPOT"
COMMAND = "python -m cost_models.accuracy.inference"
LOGO_EVALS = 150  # least-squares evaluations per held-out refit (from the physical priors)


@dataclass
class Scored:
    """Absolute percent errors per group and metric, in-sample and held out."""

    errors: dict[tuple[str, str], list[float]]
    held_out: dict[tuple[str, str], list[float]]
    not_fitting: list[str]


def _errors(
    prep: Prepared, times: object, mask: np.ndarray, out: dict[tuple[str, str], list[float]]
) -> None:
    pairs = {
        "ttft": (times.ttft_s, prep.ttft_s),  # type: ignore[attr-defined]
        "tpot": (times.tpot_s, prep.tpot_s),  # type: ignore[attr-defined]
        "tps": (times.output_tokens_per_s, prep.tokens_per_s),  # type: ignore[attr-defined]
    }
    for i in np.flatnonzero(mask):
        for metric, (pred, meas) in pairs.items():
            if not np.isnan(meas[i]):
                err = abs(pred[i] / meas[i] - 1.0) * 100.0
                out.setdefault((prep.cases[i].group, metric), []).append(float(err))


def score(cases: Sequence[ReferenceCase], held_out: bool = True) -> Scored:
    """Errors of every expressible case with the stored factors and (``held_out``) with the
    factors refitted without the case's group."""
    result = Scored({}, {}, [])
    for backend in BACKENDS:
        rows = [c for c in cases if c.problem is None and c.backend == backend]
        if not rows:
            continue
        prep = prepare(rows)
        times = compose(prep.arrays, backend_profile(backend).calibration)
        _errors(prep, times, np.ones(len(rows), dtype=bool), result.errors)
        result.not_fitting += [c.row_id for c, ok in zip(rows, prep.fits, strict=True) if not ok]
        if held_out:
            groups = np.asarray([c.group for c in rows])
            for group in sorted(set(groups)):
                cal = fit(subset(prep, groups != group), prior_calibration(backend), LOGO_EVALS)
                _errors(prep, compose(prep.arrays, cal), groups == group, result.held_out)
    return result


def _stat(values: list[float] | None, q: float) -> str:
    if not values:
        return "–"
    return f"{float(np.percentile(values, q)):.1f}"


def _latency_table(scored: Scored) -> list[str]:
    head = (
        "| group (backend system model mode) | rows | TTFT median % | TTFT p90 % | TPOT median % "
        "| TPOT p90 % | TTFT median % held out | TPOT median % held out |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    groups = sorted({g for g, m in scored.errors if m == "ttft"})
    for g in groups:
        ttft, tpot = scored.errors[(g, "ttft")], scored.errors[(g, "tpot")]
        h = scored.held_out
        lines.append(
            f"| {g} | {len(ttft)} | {_stat(ttft, 50)} | {_stat(ttft, 90)} | {_stat(tpot, 50)} | "
            f"{_stat(tpot, 90)} | {_stat(h.get((g, 'ttft')), 50)} | "
            f"{_stat(h.get((g, 'tpot')), 50)} |"
        )
    return lines


def _throughput_table(scored: Scored) -> list[str]:
    lines = [
        "| group (backend GPU model) | rows | median % | p90 % | median % held out |",
        "|---|---:|---:|---:|---:|",
    ]
    for g in sorted({g for g, m in scored.errors if m == "tps"}):
        e = scored.errors[(g, "tps")]
        lines.append(
            f"| {g.removesuffix(' max-throughput')} | {len(e)} | {_stat(e, 50)} | {_stat(e, 90)} | "
            f"{_stat(scored.held_out.get((g, 'tps')), 50)} |"
        )
    return lines


def pooled(scored: Scored, metric: str, held_out: bool = False, mode: str = "") -> list[float]:
    """All errors of ``metric`` (optionally of one mode: ``agg`` / ``disagg``)."""
    source = scored.held_out if held_out else scored.errors
    return [v for (g, m), vs in source.items() if m == metric and g.endswith(mode) for v in vs]


def _summary(scored: Scored) -> list[str]:
    lines = [
        "| figure | rows | median % | mean % | p90 % | median % held out | target median % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for metric, label, mode in (
        ("ttft", "TTFT, aggregated", " agg"),
        ("ttft", "TTFT, disaggregated", " disagg"),
        ("ttft", "TTFT, all", ""),
        ("tpot", "TPOT, aggregated", " agg"),
        ("tpot", "TPOT, disaggregated", " disagg"),
        ("tpot", "TPOT, all", ""),
        ("tps", "max throughput", ""),
    ):
        e, h = pooled(scored, metric, False, mode), pooled(scored, metric, True, mode)
        mean = f"{statistics.fmean(e):.1f}" if e else "–"
        lines.append(
            f"| {label} | {len(e)} | {_stat(e, 50)} | {mean} | {_stat(e, 90)} | {_stat(h, 50)} | "
            f"{TARGETS[metric]:g} |"
        )
    return lines


def _inexpressible(cases: Sequence[ReferenceCase]) -> list[str]:
    problems = Counter((c.group, c.problem.split(":")[0]) for c in cases if c.problem)
    if not problems:
        return ["Every row is expressed."]
    lines = ["| group | rows | reason |", "|---|---:|---|"]
    examples = {(c.group, (c.problem or "").split(":")[0]): c.problem for c in cases if c.problem}
    for (group, _), n in sorted(problems.items()):
        lines.append(f"| {group} | {n} | {examples[(group, _)]} |")
    return lines


def _factors() -> list[str]:
    names = list(backend_profile(BACKENDS[0]).calibration.model_dump())
    lines = ["| factor | " + " | ".join(BACKENDS) + " |", "|---|" + "---:|" * len(BACKENDS)]
    for name in names:
        values = [getattr(backend_profile(b).calibration, name) for b in BACKENDS]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    return lines


def _intro(scored: Scored, expressed: int, total: int) -> list[str]:
    return [
        "## Serving model (inference)",
        "",
        f"Regenerate with `{COMMAND}` (prints these sections). The serving model "
        "(`cost_models/inference*.py`) is scored on the TTFT and TPOT of "
        f"`inference_latency_measured.csv` and the maximum throughput of `inference_measured.csv`: "
        f"{expressed} of {total} rows expressed. Errors are absolute, in percent of the "
        "measurement. *In-sample* uses the per-backend factors stored in "
        "`cost_models/inference_data.yaml`, fitted on these rows by "
        "`python -m cost_models.accuracy.inference_fit`; *held out* refits the backend's "
        "factors without the row's group (backend, system, model, mode) and scores the group "
        f"with them. For reference: {AICONFIGURATOR} (mean, in-sample).",
        "",
        *_summary(scored),
    ]


def inference_report_sections(reference_dir: Path) -> list[str]:
    """Markdown sections scoring the serving model on the reference rows (see module doc)."""
    start = time.perf_counter()
    cases = latency_cases(reference_dir) + throughput_cases(reference_dir)
    scored = score(cases)
    expressed = sum(1 for c in cases if c.problem is None)
    intro = _intro(scored, expressed, len(cases))
    memory = [
        "### Memory feasibility",
        "",
        f"Every reference row was measured running; the model predicts "
        f"{len(scored.not_fitting)} of the {expressed} expressed rows not to fit"
        + (f" ({', '.join(scored.not_fitting[:10])})." if scored.not_fitting else "."),
    ]
    missing = sum(1 for c in cases if c.problem)
    sections = [
        "\n".join(intro),
        "\n".join(["### TTFT and TPOT per group", "", *_latency_table(scored)]),
        "\n".join(["### Maximum throughput per group", "", *_throughput_table(scored)]),
        "\n".join(memory),
        "\n".join(
            [
                "### Rows the serving model cannot express",
                "",
                f"{missing} rows, counted here rather than dropped:",
                "",
                *_inexpressible(cases),
            ]
        ),
        "\n".join(
            [
                "### Fitted serving factors",
                "",
                *_factors(),
                "",
                f"_Scored in {time.perf_counter() - start:.0f} s._",
            ]
        ),
    ]
    return sections


def default_reference_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "reference"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    reference = Path(args[0]) if args else default_reference_dir()
    print("\n\n".join(inference_report_sections(reference)))


if __name__ == "__main__":
    main()
