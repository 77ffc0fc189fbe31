"""Does calibrating on this machine's own CPU lower the analytical model's error?

Runs the micro-benchmarks of `paretune calibrate` (GEMMs, attention, copies, gloo collectives
over two processes, and single-device training steps of the FIT_STEPS shapes), fits the
calibration, and profiles the HELD_OUT_STEPS shapes (never part of the fit; measured
alternately with the fit shapes so both see the same load on a shared machine). Prints the
analytical model's step-time and memory error on the held-out shapes before and after.

    .venv/bin/python benchmarks/calibration_error.py [--quick] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

from cost_models.profiling.fit import fit_calibration
from cost_models.profiling.fit import held_out_comparison
from cost_models.profiling.microbench import calibration_experiment
from search_spaces.local_device import local_cpu_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick benchmark suite")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    profile, held = calibration_experiment(quick=args.quick, threads=args.threads)
    nominal = local_cpu_spec()
    fit = fit_calibration(profile, nominal)
    result = held_out_comparison(fit, held, nominal)
    result["fit_report"] = fit.report
    result["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return
    print(
        f"device: {profile.device}, {args.threads} thread(s), compute dtype "
        f"{profile.compute_dtype}; fit on {len(profile.steps)} shapes, tested on {len(held)}"
    )
    print(
        f"{'held-out shape':28} {'measured s':>10} {'uncal. s':>9} {'err':>7} "
        f"{'calib. s':>9} {'err':>7}"
    )
    for name, b, a in zip(
        result["shapes"], result["uncalibrated"], result["calibrated"], strict=True
    ):
        print(
            f"{name:28} {b['measured_step_s']:10.4f} {b['predicted_step_s']:9.4f} "
            f"{b['step_error']:+7.1%} {a['predicted_step_s']:9.4f} {a['step_error']:+7.1%}"
        )
    print(
        f"step-time mean abs. error on held-out shapes: "
        f"uncalibrated {result['step_time_mape_uncalibrated']:.1%} -> calibrated "
        f"{result['step_time_mape_calibrated']:.1%}"
    )
    print(
        f"peak-memory mean abs. error on held-out shapes: "
        f"uncalibrated {result['memory_mape_uncalibrated']:.1%} -> calibrated "
        f"{result['memory_mape_calibrated']:.1%}"
    )
    print(f"({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
