"""The closed loop on this machine's own CPU: fitting the analytical model to a hardware
profile lowers its error on profiled training steps of shapes left out of the fit; and a
job that names a stored profile gets the fitted calibration."""

from __future__ import annotations

import pytest

from cost_models.profiling.calibrated import calibrated_inputs
from cost_models.profiling.fit import fit_calibration
from cost_models.profiling.fit import held_out_comparison
from cost_models.profiling.microbench import calibration_experiment
from cost_models.profiling.suites import FIT_STEPS
from cost_models.profiling.suites import HELD_OUT_STEPS
from search_spaces.local_device import local_cpu_spec
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType


def test_fit_and_held_out_shapes_are_disjoint() -> None:
    def key(shape: tuple) -> str:  # type: ignore[type-arg]
        model, workload, config = shape
        return f"{model.model_dump_json()}{workload.model_dump_json()}{config.model_dump_json()}"

    assert not {key(s) for s in FIT_STEPS} & {key(s) for s in HELD_OUT_STEPS}


@pytest.mark.slow
def test_calibrating_on_this_cpu_lowers_the_error_on_held_out_shapes() -> None:
    profile, held = calibration_experiment(quick=True, world_size=1)
    nominal = local_cpu_spec()
    fit = fit_calibration(profile, nominal)
    result = held_out_comparison(fit, held, nominal)
    print(
        f"held-out step-time error: uncalibrated {result['step_time_mape_uncalibrated']:.1%}"
        f" -> calibrated {result['step_time_mape_calibrated']:.1%}; memory "
        f"{result['memory_mape_uncalibrated']:.1%} -> {result['memory_mape_calibrated']:.1%}"
    )
    assert result["step_time_mape_calibrated"] < result["step_time_mape_uncalibrated"]
    assert result["memory_mape_calibrated"] < result["memory_mape_uncalibrated"]
    assert fit.report["fit_step_error_after"] < fit.report["fit_step_error_before"]
    # the measured figures replace the nominal ones, and the model uses them
    device = fit.calibration.device
    assert device.peak_tflops_dense[DType.bf16] == pytest.approx(
        max(g.flops_per_s for g in profile.gemm if g.dtype == profile.compute_dtype) / 1e12
    )
    cluster, constants = calibrated_inputs(ClusterSpec(gpu=nominal, num_gpus=2), fit.calibration)
    assert cluster.gpu == device and constants is not None
    assert constants.working_margin_gib == fit.calibration.constants["working_margin_gib"]
