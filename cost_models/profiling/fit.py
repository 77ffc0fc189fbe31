"""Fit the analytical model to a hardware profile: measured device figures, fitted constants.

Two stages, so that each constant comes from the measurement that pins it down:

1. Device figures from the micro-benchmarks, replacing the datasheet (or, for a CPU, the
   nominal ISA figures): the dense peak is the fastest GEMM measured, the memory bandwidth the
   fastest large copy, the scale-up bandwidth and per-step latency an alpha-beta fit of the
   all-reduce times (``t = steps * alpha + factor * S / busbw``). With achieved rather than
   nominal figures, link and memory efficiencies become 1. Kernel efficiencies start at the
   aggregate achieved share of the peak over the GEMM and attention benchmarks.
2. Three numbers fitted on the profile's small training steps: the achieved share of memory
   bandwidth from the optimizer steps, then, by coordinate descent over grids on the squared
   log error of the forward + backward time, a common factor on the kernel efficiencies (GEMM
   and attention keep the ratio their benchmarks measured) and the memory-bound passes; last
   the working-memory margin from their measured peaks. Few parameters on purpose: step times on
   a shared machine are noisy, and more constants would fit the noise. The model is used as
   a black box (``estimate_training``), so the fit follows the model as it evolves.

Shapes for testing the fit are never in a profile (``suites.HELD_OUT_STEPS``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.profiling.hardware_profile import BUS_FACTOR
from cost_models.profiling.hardware_profile import RING_STEPS
from cost_models.profiling.hardware_profile import CollectiveBench
from cost_models.profiling.hardware_profile import HardwareProfile
from cost_models.profiling.hardware_profile import StepBench
from cost_models.training import TrainingEstimate
from cost_models.training import estimate_training
from search_spaces.evaluators import ProfileCalibration
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import GPUSpec

GIB = float(1 << 30)
# Stage 2 fits three numbers on the step benches, each on the part of the step it governs:
# the achieved share of the memory bandwidth on the optimizer step (an eager optimizer passes
# over its state many more times than a fused kernel), then on the forward + backward time a
# factor on the kernel efficiencies (their ratio stays what the kernel benchmarks measured) and
# the memory-bound passes. Three, not one per constant: a handful of noisy step times cannot
# tell more apart.
KERNEL_EFFICIENCIES = ("gemm_efficiency_bf16", "attention_efficiency")
FIT_GRIDS: dict[str, tuple[float, ...]] = {
    "kernel_scale": tuple(0.03 * 1.15**i for i in range(36)),  # 0.03 .. ~3.9
    "elementwise_passes": (0.0, *(0.5 * 1.3**i for i in range(36))),  # 0, 0.5 .. ~3.9e3
}
LARGE_COPY_BYTES = 16 << 20  # copies from this size on measure memory, not caches


class CalibrationFit(BaseModel):
    model_config = ConfigDict(frozen=True)

    calibration: ProfileCalibration
    report: dict[str, Any]


def fit_alpha_beta(benches: Sequence[CollectiveBench], op: str) -> tuple[float, float] | None:
    """(bus bandwidth bytes/s, latency s per ring step) of ``op``: relative least squares
    of ``t = a + b * S`` (each size weighs the same however long it takes).

    When noise leaves no positive slope (a busy machine can time a small message slower
    than a large one), the largest message's achieved bandwidth stands in, latency 0: a
    lower bound on the bandwidth rather than no figure at all."""
    rows = [b for b in benches if b.op == op]
    if len(rows) < 2:
        return None
    n = rows[0].world_size
    xs, ts = [float(r.size_bytes) for r in rows], [r.time_s for r in rows]
    w = [1.0 / t**2 for t in ts]
    sw = sum(w)
    mx = sum(wi * x for wi, x in zip(w, xs, strict=True)) / sw
    mt = sum(wi * t for wi, t in zip(w, ts, strict=True)) / sw
    sxx = sum(wi * (x - mx) ** 2 for wi, x in zip(w, xs, strict=True))
    sxt = sum(wi * (x - mx) * (t - mt) for wi, x, t in zip(w, xs, ts, strict=True))
    slope = sxt / sxx if sxx > 0 else 0.0
    if slope <= 0:
        largest = max(rows, key=lambda r: r.size_bytes)
        if largest.time_s <= 0:
            return None
        return BUS_FACTOR[op](n) * largest.size_bytes / largest.time_s, 0.0
    intercept = max(0.0, mt - slope * mx)
    return BUS_FACTOR[op](n) / slope, intercept / RING_STEPS[op](n)


def measured_device(profile: HardwareProfile, base: GPUSpec) -> tuple[GPUSpec, dict[str, Any]]:
    """``base`` with the figures the profile measured in place of the nominal ones."""
    compute = [g for g in profile.gemm if g.dtype == profile.compute_dtype]
    fp32 = [g for g in profile.gemm if g.dtype == "float32"]
    peaks = dict(base.peak_tflops_dense)
    if compute:
        peaks[DType.bf16] = max(g.flops_per_s for g in compute) / 1e12
    if fp32:
        peaks[DType.fp32] = max(g.flops_per_s for g in fp32) / 1e12
    update: dict[str, Any] = {"peak_tflops_dense": peaks}
    large = [m.bytes_per_s for m in profile.memory if m.size_bytes >= LARGE_COPY_BYTES]
    if large or profile.memory:
        bw = statistics.median(large) if large else max(m.bytes_per_s for m in profile.memory)
        update["memory_bandwidth_gb_per_s"] = bw / 1e9
    link = fit_alpha_beta(profile.collectives, "all_reduce")
    if link:
        update["nvlink_bandwidth_gb_per_s"] = link[0] / 1e9
    update["source"] = (
        f"hardware profile '{profile.name}' ({profile.device}, {profile.driver_version}, "
        f"{profile.threads} thread(s)): measured peak, memory and link bandwidth"
    )
    report = {k: v for k, v in update.items() if k != "peak_tflops_dense"}
    report["peak_tflops"] = {str(k): v for k, v in peaks.items()}
    report["all_reduce_fit"] = (
        {"busbw_bytes_per_s": link[0], "latency_s": link[1]} if link else None
    )
    return base.model_copy(update=update), report


def _kernel_constants(profile: HardwareProfile, device: GPUSpec) -> dict[str, float]:
    """Stage 1: efficiencies from the kernel benchmarks, link figures as achieved."""
    peak = device.peak_flops(DType.bf16)
    out: dict[str, float] = {
        "hbm_efficiency": 1.0,
        "nvlink_efficiency": 1.0,
        "scaleout_efficiency": 1.0,
        "working_margin_gib": 0.0,
        "fragmentation_fraction": 0.0,
    }
    gemm = [g for g in profile.gemm if g.dtype == profile.compute_dtype]
    if gemm:
        flops = sum(g.flops_per_s * g.time_s for g in gemm)
        out["gemm_efficiency_bf16"] = min(1.0, flops / (peak * sum(g.time_s for g in gemm)))
    if profile.attention:
        flops = sum(a.flops_per_s * a.time_s for a in profile.attention)
        total = sum(a.time_s for a in profile.attention)
        out["attention_efficiency"] = min(1.0, flops / (peak * total))
    link = fit_alpha_beta(profile.collectives, "all_reduce")
    if link:
        out["nvlink_latency_s"] = out["scaleout_latency_s"] = link[1]
    if profile.device_kind == "cpu":
        out["tp_comm_exposed_fraction"] = 1.0  # gloo collectives do not overlap compute
        out["gemm_tile_overhead_k"] = 0.0  # no tensor-core tiles on a CPU
    return {k: v for k, v in out.items() if k in Calibration.model_fields}


def _with(cal: Calibration, values: dict[str, float]) -> Calibration:
    return Calibration.model_validate({**cal.model_dump(), **values})


def _estimate(step: StepBench, device: GPUSpec, cal: Calibration) -> TrainingEstimate:
    cluster = ClusterSpec(gpu=device, num_gpus=1)
    return estimate_training(step.model, cluster, step.workload, step.config, cal)


def predict_step(step: StepBench, device: GPUSpec, cal: Calibration) -> tuple[float, float]:
    """Predicted (step seconds, memory GiB) of a single-device step bench."""
    est = _estimate(step, device, cal)
    return est.step_time_s, est.memory_per_gpu_gib


def step_errors(
    steps: Sequence[StepBench], device: GPUSpec, cal: Calibration
) -> list[dict[str, float]]:
    """Predicted and measured step time and memory per bench, with relative errors."""
    out = []
    for s in steps:
        t, mem = predict_step(s, device, cal)
        out.append(
            {
                "predicted_step_s": t,
                "measured_step_s": s.step_s,
                "step_error": (t - s.step_s) / s.step_s,
                "predicted_memory_gib": mem,
                "measured_memory_gib": s.peak_bytes / GIB,
            }
        )
    return out


def mean_abs_error(rows: Sequence[dict[str, float]], key: str = "step_error") -> float:
    return sum(abs(r[key]) for r in rows) / len(rows) if rows else math.nan


def _loss(steps: Sequence[StepBench], device: GPUSpec, cal: Calibration) -> float:
    """Squared log error of the forward + backward time (the step without the optimizer)."""
    total = 0.0
    for s in steps:
        est = _estimate(s, device, cal)
        compute = est.step_time_s - est.breakdown.get("optimizer", 0.0)
        total += math.log(compute / s.microbatch_s) ** 2
    return total


def _optimizer_bandwidth_share(
    steps: Sequence[StepBench], device: GPUSpec, cal: Calibration
) -> float:
    """hbm_efficiency that centres the predicted optimizer step on the measured ones."""
    full = _with(cal, {"hbm_efficiency": 1.0})
    ratios = []
    for s in steps:
        predicted = _estimate(s, device, full).breakdown.get("optimizer", 0.0)
        if predicted > 0 and s.optimizer_s > 0:
            ratios.append(math.log(predicted / s.optimizer_s))
    share = math.exp(sum(ratios) / len(ratios)) if ratios else 1.0
    return min(1.0, max(0.01, share))


def _apply(cal: Calibration, knobs: dict[str, float]) -> Calibration:
    """Stage-1 constants with the stage-2 knobs applied (kernel efficiencies scaled)."""
    values = {
        k: min(1.0, max(0.005, float(getattr(cal, k)) * knobs["kernel_scale"]))
        for k in KERNEL_EFFICIENCIES
        if k in Calibration.model_fields
    }
    values.update({k: v for k, v in knobs.items() if k in Calibration.model_fields})
    return _with(cal, values)


def _descend(steps: Sequence[StepBench], device: GPUSpec, cal: Calibration) -> Calibration:
    """Stage 2: the optimizer's bandwidth share, then coordinate descent over the knobs'
    grids (each pass tries every value of one knob, the others fixed) until nothing improves."""
    if "hbm_efficiency" in Calibration.model_fields:
        cal = _with(cal, {"hbm_efficiency": _optimizer_bandwidth_share(steps, device, cal)})
    knobs = {"kernel_scale": 1.0}
    knobs.update({k: float(getattr(cal, k)) for k in FIT_GRIDS if k in Calibration.model_fields})
    best = _loss(steps, device, _apply(cal, knobs))
    for _ in range(6):
        improved = False
        for name in knobs:
            for value in FIT_GRIDS[name]:
                trial = {**knobs, name: value}
                loss = _loss(steps, device, _apply(cal, trial))
                if loss < best - 1e-12:
                    best, knobs, improved = loss, trial, True
        if not improved:
            break
    return _apply(cal, knobs)


def _memory_margin(steps: Sequence[StepBench], device: GPUSpec, cal: Calibration) -> float:
    """Working margin (GiB) that centres the predicted memory on the measured peaks."""
    zero = _with(cal, {"working_margin_gib": 0.0, "fragmentation_fraction": 0.0})
    gaps = [s.peak_bytes / GIB - predict_step(s, device, zero)[1] for s in steps]
    return max(0.0, statistics.median(gaps)) if gaps else 0.0


def fit_calibration(
    profile: HardwareProfile, base_device: GPUSpec, profile_id: int | None = None
) -> CalibrationFit:
    """The calibration of ``profile``'s device (see the module docstring)."""
    device, device_report = measured_device(profile, base_device)
    nominal = load_calibration(device.generation)
    cal = _with(nominal, _kernel_constants(profile, device))
    before = step_errors(profile.steps, base_device, nominal)
    if profile.steps:
        cal = _descend(profile.steps, device, cal)
        if "working_margin_gib" in Calibration.model_fields:
            cal = _with(cal, {"working_margin_gib": _memory_margin(profile.steps, device, cal)})
    after = step_errors(profile.steps, device, cal)
    changed = {
        k: float(v)
        for k, v in cal.model_dump().items()
        if k != "generation" and v != getattr(nominal, k)
    }
    report = {
        "device": device_report,
        "constants": changed,
        "fit_steps": len(profile.steps),
        "fit_step_error_before": mean_abs_error(before) if before else None,
        "fit_step_error_after": mean_abs_error(after) if after else None,
    }
    calibration = ProfileCalibration(
        profile_name=profile.name, profile_id=profile_id, device=device, constants=changed
    )
    return CalibrationFit(calibration=calibration, report=report)


def held_out_comparison(
    fit: CalibrationFit, held_out: Sequence[StepBench], nominal_device: GPUSpec
) -> dict[str, Any]:
    """Step-time and memory errors on shapes the fit never saw: the nominal device with its
    generation's constants (uncalibrated) against the fitted calibration."""
    from cost_models.profiling.calibrated import calibration_constants

    nominal = load_calibration(nominal_device.generation)
    before = step_errors(held_out, nominal_device, nominal)
    after = step_errors(held_out, fit.calibration.device, calibration_constants(fit.calibration))
    for row in (*before, *after):
        row["memory_error"] = (row["predicted_memory_gib"] - row["measured_memory_gib"]) / row[
            "measured_memory_gib"
        ]
    return {
        "shapes": [
            s.model.name + f"-s{s.workload.seq_len}-b{s.config.micro_batch_size}" for s in held_out
        ],
        "uncalibrated": before,
        "calibrated": after,
        "step_time_mape_uncalibrated": mean_abs_error(before),
        "step_time_mape_calibrated": mean_abs_error(after),
        "memory_mape_uncalibrated": mean_abs_error(before, "memory_error"),
        "memory_mape_calibrated": mean_abs_error(after, "memory_error"),
    }
