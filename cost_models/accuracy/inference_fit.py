"""Fit the serving model's per-backend factors on the published rows.

The factors (``ServingCalibration``) are few and named, the same for every model and GPU of a
backend: no per-row or per-model correction. The fit minimises the log error of TTFT, TPOT and
maximum throughput with a robust loss (queue-saturated rows do not dominate) and pulls
each factor gently towards a physical prior (``PRIORS``: datasheet-level efficiencies and
microsecond-scale launch costs, the same for every backend) so that factors the data cannot pin
down stay physical.

``python -m cost_models.accuracy.inference_fit`` prints the fitted factors as the YAML to paste
into ``inference_data.yaml``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from cost_models.accuracy.inference_rows import ReferenceCase
from cost_models.accuracy.inference_rows import latency_cases
from cost_models.accuracy.inference_rows import throughput_cases
from cost_models.inference import plan_deployment
from cost_models.inference import serving_case
from cost_models.inference_params import DATA_FILE
from cost_models.inference_params import ServingCalibration
from cost_models.inference_serving import CaseArrays
from cost_models.inference_serving import FloatArray
from cost_models.inference_serving import compose

FACTORS: tuple[str, ...] = tuple(ServingCalibration.model_fields)
PRIOR_WEIGHT = 0.1  # log-error units per e-fold away from the prior
# A near-L1 loss (soft-L1 with a 5% knee): the report scores medians of absolute errors, and
# queue-saturated or oddly measured rows then pull on the factors no more than other rows.
LOSS = "soft_l1"
LOSS_SCALE = 0.05
TTFT_WEIGHT = 1.0
# Every latency row counts the same (GROUP_EXPONENT 0: weight 1 / rows_in_group ** 0); the
# 110 maximum-throughput rows are another benchmark of one backend, weighted up so that they
# are not drowned by its ~1000 latency rows.
GROUP_EXPONENT = 0.0
THROUGHPUT_WEIGHT = 5.0
# Efficiencies cannot beat the datasheet: every *_cost is at least 1.
BOUNDS = (
    {"prefill_burst_fraction": (1e-4, 1.0)}
    | {f: (1.0, 20.0) for f in ServingCalibration.model_fields if f.endswith("_cost")}
    | {"hbm_cost": (1.0, 1.3)}
    # the in-flight iteration, the one carrying the prompt, a step-late return (overlap
    # scheduler / asynchronous output processing) and the streamed token's hand-off
    | {"first_token_steps": (0.5, 4.0)}
)


# Physical priors (and the fit's starting point): GEMMs and HBM streaming near datasheet speed,
# attention and collectives at a fraction of it, launch gaps of microseconds per layer, a few
# milliseconds of server latency; the same for every backend, so what the fit changes is data.
PRIORS: dict[str, float] = {
    "decode_step_s": 1.0e-3,
    "decode_layer_s": 15.0e-6,
    "decode_moe_layer_s": 40.0e-6,
    "per_request_s": 40.0e-6,
    "prefill_chunk_s": 5.0e-3,
    "prefill_layer_s": 100.0e-6,
    "prefill_moe_layer_s": 300.0e-6,
    "hbm_cost": 1.2,
    "kv_cost": 1.5,
    "decode_gemm_cost": 1.5,
    "prefill_gemm_cost": 1.6,
    "moe_gemm_cost": 1.3,
    "attention_cost": 2.5,
    "collective_latency_s": 4.0e-6,
    "link_cost": 1.5,
    "request_latency_s": 20.0e-3,
    "first_token_steps": 1.5,
    "disagg_latency_s": 20.0e-3,
    "prefill_burst_fraction": 0.1,
    "prefill_interference": 1.0,
}


def prior_calibration(backend: str) -> ServingCalibration:
    """The fit's starting point and regulariser (the same for every backend)."""
    return ServingCalibration.model_validate(PRIORS)


@dataclass(frozen=True)
class Prepared:
    """The expressible cases of one backend, stacked, with what was measured."""

    cases: list[ReferenceCase]
    arrays: CaseArrays
    ttft_s: FloatArray  # nan where the row measured throughput
    tpot_s: FloatArray
    tokens_per_s: FloatArray  # nan where the row measured latency
    weight: FloatArray  # 1 / (rows of the case's group) ** GROUP_EXPONENT
    fits: NDArray[np.bool_]  # the model finds room for at least one request's KV cache


def prepare(cases: Sequence[ReferenceCase]) -> Prepared:
    """Stack ``cases`` (all of one backend, all expressible)."""
    serving, fits = [], []
    for c in cases:
        assert c.model and c.cluster and c.workload and c.config
        dep = plan_deployment(c.model, c.cluster, c.config, c.profile())
        w = c.workload
        room = dep.decode.request_slots(w.input_len, w.output_len) >= 1
        fits.append(
            room and (not dep.disaggregated or dep.prefill.request_slots(w.input_len, 0) >= 1)
        )
        serving.append(serving_case(dep, c.workload, c.workload.concurrency))
    sizes = Counter(c.group for c in cases)

    def measured(key: str, scale: float) -> FloatArray:
        return np.asarray([c.measured.get(key, np.nan) * scale for c in cases])

    return Prepared(
        cases=list(cases),
        arrays=CaseArrays.of(serving),
        ttft_s=measured("ttft_ms", 1e-3),
        tpot_s=measured("tpot_ms", 1e-3),
        tokens_per_s=measured("output_tokens_per_s", 1.0),
        weight=np.asarray([1.0 / sizes[c.group] ** GROUP_EXPONENT for c in cases]),
        fits=np.asarray(fits, dtype=np.bool_),
    )


def subset(prep: Prepared, mask: NDArray[np.bool_]) -> Prepared:
    """The cases of ``prep`` where ``mask`` holds (for held-out refits)."""
    a = prep.arrays
    arrays = CaseArrays(**{f: getattr(a, f)[mask] for f in a.__dataclass_fields__})
    return Prepared(
        cases=[c for c, keep in zip(prep.cases, mask, strict=True) if keep],
        arrays=arrays,
        ttft_s=prep.ttft_s[mask],
        tpot_s=prep.tpot_s[mask],
        tokens_per_s=prep.tokens_per_s[mask],
        weight=prep.weight[mask],
        fits=prep.fits[mask],
    )


def log_errors(prep: Prepared, cal: ServingCalibration) -> FloatArray:
    """log(predicted / measured) of every measured figure (TTFT, TPOT, throughput)."""
    times = compose(prep.arrays, cal)
    parts = [
        np.log(times.ttft_s / prep.ttft_s),
        np.log(times.tpot_s / prep.tpot_s),
        np.log(times.output_tokens_per_s / prep.tokens_per_s),
    ]
    w = prep.weight
    weights = np.concatenate([TTFT_WEIGHT * w, w, THROUGHPUT_WEIGHT * w])
    errors = np.concatenate(parts) * weights
    return errors[~np.isnan(errors)]


def _calibration(x: FloatArray) -> ServingCalibration:
    return ServingCalibration.model_validate(dict(zip(FACTORS, np.exp(x), strict=True)))


def fit(prep: Prepared, prior: ServingCalibration, max_evals: int = 400) -> ServingCalibration:
    """The factors minimising the robust, group-weighted log error of ``prep``."""
    x0 = np.log(np.asarray([getattr(prior, f) for f in FACTORS]))
    lower = np.asarray([np.log(BOUNDS.get(f, (1e-9, 1e3))[0]) for f in FACTORS])
    upper = np.asarray([np.log(BOUNDS.get(f, (1e-9, 1e3))[1]) for f in FACTORS])
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    prior_x = x0.copy()

    def residuals(x: FloatArray) -> FloatArray:
        errors = log_errors(prep, _calibration(x))
        return np.concatenate([errors, PRIOR_WEIGHT * (x - prior_x)])

    result = least_squares(
        residuals,
        x0,
        bounds=(lower, upper),
        loss=LOSS,
        f_scale=LOSS_SCALE,
        max_nfev=max_evals,
        tr_solver="lsmr",
    )
    return _calibration(result.x)


def expressible(cases: Sequence[ReferenceCase], backend: str) -> list[ReferenceCase]:
    return [c for c in cases if c.problem is None and c.backend == backend]


def fit_all(reference_dir: Path) -> dict[str, ServingCalibration]:
    """Fitted factors of every backend, from the physical priors."""
    cases = latency_cases(reference_dir) + throughput_cases(reference_dir)
    out = {}
    for backend in ("vllm", "sglang", "trtllm"):
        prep = prepare(expressible(cases, backend))
        out[backend] = fit(prep, prior_calibration(backend))
    return out


def write_calibration(path: Path, fitted: dict[str, ServingCalibration]) -> None:
    """Replace each backend's ``calibration:`` block of the data file, keeping its comments."""
    lines, out, backend = path.read_text().splitlines(), [], None
    skipping = False
    for line in lines:
        stripped = line.strip()
        if skipping and line.startswith("      "):
            continue
        skipping = False
        if line.startswith("  ") and not line.startswith("   ") and stripped.endswith(":"):
            backend = stripped[:-1]
        out.append(line)
        if stripped == "calibration:" and backend in fitted:
            values = fitted[backend].model_dump()
            out += [f"      {name}: {value:.4g}" for name, value in values.items()]
            skipping = True
    path.write_text("\n".join(out) + "\n")


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - a developer tool
    """Fit and print the factors; with ``--write`` store them in inference_data.yaml."""
    args = sys.argv[1:] if argv is None else argv
    write = "--write" in args
    paths = [a for a in args if a != "--write"]
    default = Path(__file__).resolve().parents[3] / "shared" / "reference"
    fitted = fit_all(Path(paths[0]) if paths else default)
    for backend, cal in fitted.items():
        print(f"  {backend}:\n    calibration:")
        for name, value in cal.model_dump().items():
            print(f"      {name}: {value:.4g}")
    if write:
        write_calibration(DATA_FILE, fitted)


if __name__ == "__main__":  # pragma: no cover
    main()
