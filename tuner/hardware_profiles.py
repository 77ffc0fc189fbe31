"""Hardware profiles for jobs: measure and store them (`paretune calibrate`), and resolve the
one a job names into the fitted calibration its workers use.

Workers never read the database: when a job starts, the runner fits the named profile to the
job's device and puts the result into the job's evaluator settings (``calibration``), which
travel to the workers with the spec. The fit is made again at each start, from the stored
measurements, so it always matches the current analytical model.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cost_models.profiling.fit import CalibrationFit
from cost_models.profiling.fit import fit_calibration
from cost_models.profiling.hardware_profile import HardwareProfile
from results.db import database_url
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.db import upgrade_to_head
from results.hardware_profiles import HardwareProfileRecord
from results.hardware_profiles import HardwareProfileRepository
from search_spaces.local_device import local_cpu_spec
from search_spaces.specs import GPUSpec


class HardwareProfileError(ValueError):
    """A job names a hardware profile that is missing or measured on another kind of device."""


def _check_device(profile: HardwareProfile, gpu: GPUSpec) -> None:
    on_cpu = gpu.generation == "cpu"
    if (profile.device_kind == "cpu") != on_cpu:
        raise HardwareProfileError(
            f"evaluator.hardware_profile: '{profile.name}' was measured on "
            f"{profile.device} ({profile.device_kind}) but the job's cluster is {gpu.name}; "
            "calibrate on the job's device or drop hardware_profile"
        )


def resolve_hardware_profile(spec: Any, session: Session) -> Any:
    """``spec`` with the calibration of the hardware profile its evaluator names (unchanged
    when it names none or already carries a calibration)."""
    settings = spec.evaluator
    name = getattr(settings, "hardware_profile", None)
    if not name or getattr(settings, "calibration", None) is not None:
        return spec
    record = HardwareProfileRepository(session).latest(name)
    if record is None:
        raise HardwareProfileError(
            f"evaluator.hardware_profile: no stored hardware profile named '{name}'; run "
            f"`paretune calibrate --name {name}` on the device first"
        )
    profile = HardwareProfile.model_validate(record.data)
    _check_device(profile, spec.cluster.gpu)
    fit = fit_calibration(profile, spec.cluster.gpu, profile_id=record.id)
    return spec.model_copy(
        update={"evaluator": settings.model_copy(update={"calibration": fit.calibration})}
    )


def store_profile(
    session: Session, profile: HardwareProfile, fit: CalibrationFit | None
) -> HardwareProfileRecord:
    """Store a measured profile (and the fit made against its nominal device, for reading)."""
    return HardwareProfileRepository(session).add(
        name=profile.name,
        device=profile.device,
        device_kind=profile.device_kind,
        driver_version=profile.driver_version,
        library_versions=profile.library_versions,
        host=profile.host,
        data=profile.model_dump(mode="json"),
        calibration=fit.model_dump(mode="json") if fit else None,
    )


def calibrate(
    name: str,
    *,
    db_url: str | None = None,
    quick: bool = False,
    world_size: int = 2,
    threads: int = 1,
    device: str = "auto",
    base_gpu: GPUSpec | None = None,
    with_steps: bool = True,
) -> tuple[HardwareProfileRecord, CalibrationFit | None]:
    """Run the micro-benchmarks here, fit them, store the profile; ``base_gpu`` is the
    datasheet the measured figures replace (default: this CPU's nominal figures)."""
    from cost_models.profiling.microbench import run_microbenchmarks

    profile = run_microbenchmarks(
        name,
        quick=quick,
        world_size=world_size,
        threads=threads,
        device_setting=device,
        with_steps=with_steps,
    )
    base = base_gpu or (local_cpu_spec() if profile.device_kind == "cpu" else None)
    fit = fit_calibration(profile, base) if base else None
    engine = make_engine(database_url(db_url))
    try:
        upgrade_to_head(engine)
        with session_scope(make_session_factory(engine)) as session:
            record = store_profile(session, profile, fit)
    finally:
        engine.dispose()
    return record, fit


def summary_rows(
    record: HardwareProfileRecord, fit: CalibrationFit | None
) -> list[tuple[str, str]]:
    """What `paretune calibrate` prints: the key, the measured figures, the fitted constants."""
    profile = HardwareProfile.model_validate(record.data)
    rows = [
        ("device", f"{record.device} ({record.device_kind}, {profile.threads} thread(s))"),
        ("driver", record.driver_version),
        ("libraries", ", ".join(f"{k} {v}" for k, v in sorted(record.library_versions.items()))),
        (
            "benchmarks",
            f"{len(profile.gemm)} GEMMs, {len(profile.attention)} attention, "
            f"{len(profile.memory)} copies, {len(profile.collectives)} collectives, "
            f"{len(profile.steps)} training steps in {profile.duration_s:.0f} s",
        ),
    ]
    if fit is None:
        rows.append(("calibration", "fitted when a job uses it (pass --gpu to fit now)"))
        return rows
    device = fit.report["device"]
    for dtype, tflops in device["peak_tflops"].items():
        rows.append((f"peak {dtype}", f"{tflops * 1e3:.1f} GFLOP/s"))
    rows.append(("memory bandwidth", f"{device.get('memory_bandwidth_gb_per_s', 0):.1f} GB/s"))
    link = device.get("all_reduce_fit")
    if link:
        rows.append(("all-reduce busbw", f"{link['busbw_bytes_per_s'] / 1e9:.3f} GB/s"))
        rows.append(("all-reduce latency", f"{link['latency_s'] * 1e6:.0f} us per step"))
    for key, value in fit.report["constants"].items():
        rows.append((key, f"{value:.4g}"))
    before, after = fit.report["fit_step_error_before"], fit.report["fit_step_error_after"]
    if before is not None and after is not None:
        rows.append(("step-time error on fit shapes", f"{before:.1%} -> {after:.1%}"))
    return rows
