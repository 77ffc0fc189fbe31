"""Real measurements: the profile evaluator (a PyTorch shard per candidate), collective and
kernel micro-benchmarks, hardware profiles, and the calibration fitted to them.

Nothing here imports torch at import time: the modules that need it (``torch_model``,
``measure``, ``device``, ``microbench``) are imported inside the functions that run them.
"""

from cost_models.profiling.calibrated import calibrated_inputs
from cost_models.profiling.runner import ProfilingError

__all__ = ["ProfilingError", "calibrated_inputs"]
