"""Evaluators: analytical cost models of training (and later inference), and their calibration."""

from cost_models.calibration import Calibration
from cost_models.calibration import load_calibration
from cost_models.plan import Framework
from cost_models.training import TrainingEstimate
from cost_models.training import estimate_training

EVALUATOR_VERSION = "analytical-training-0.2"

__all__ = [
    "EVALUATOR_VERSION",
    "Calibration",
    "Framework",
    "TrainingEstimate",
    "estimate_training",
    "load_calibration",
]
