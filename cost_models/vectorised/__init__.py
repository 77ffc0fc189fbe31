"""The analytical training model over arrays of configurations at once (numpy).

``estimate_training_batch(model, cluster, workload, configs)`` is ``estimate_training`` for a
whole batch: the tuner's exhaustive sweeps and chunked trials evaluate thousands of
configurations of one job, and a per-configuration Python call (plan, pydantic result) costs
far more than the arithmetic. The batch path runs the same formulas as numpy expressions over
knob columns (``TrainingBatch``), calling the scalar helpers once per distinct value of the few
knobs a term depends on where that is simpler.
"""

from cost_models.vectorised.columns import TrainingBatch
from cost_models.vectorised.training import TrainingBatchEstimate
from cost_models.vectorised.training import estimate_training_batch

__all__ = ["TrainingBatch", "TrainingBatchEstimate", "estimate_training_batch"]
