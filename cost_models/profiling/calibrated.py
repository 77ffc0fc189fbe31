"""Apply a fitted hardware-profile calibration to the analytical model's inputs."""

from __future__ import annotations

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from search_spaces.evaluators import ProfileCalibration
from search_spaces.specs import ClusterSpec


def calibration_constants(calibration: ProfileCalibration) -> Calibration:
    """The device generation's constants with the fitted ones in their place.

    Constants the model no longer has are ignored and new ones keep their defaults, so a
    stored fit survives changes to the model's set of constants.
    """
    base = load_calibration(calibration.device.generation)
    fitted = {k: v for k, v in calibration.constants.items() if k in Calibration.model_fields}
    return Calibration.model_validate({**base.model_dump(), **fitted})


def calibrated_inputs(
    cluster: ClusterSpec, calibration: ProfileCalibration | None
) -> tuple[ClusterSpec, Calibration | None]:
    """The cluster with the profiled device's measured figures, and the fitted constants
    (the cluster unchanged and ``None`` without a calibration: the model's own defaults)."""
    if calibration is None:
        return cluster, None
    measured = cluster.model_copy(update={"gpu": calibration.device})
    return measured, calibration_constants(calibration)
