"""ZeRO-3/FSDP collectives: per-layer ring latency, multi-rail vs one NIC per GPU, the
re-gather of DeepSpeed's recompute, and per-module prefetch (``training_comm.py``)."""

from __future__ import annotations

import pytest

from cost_models.compute import microbatch_compute
from cost_models.memory import stage_params
from cost_models.plan import MODERN
from cost_models.plan import Framework
from cost_models.plan import make_plan
from cost_models.training import estimate_training
from cost_models.training_comm import data_parallel_s
from cost_models.training_comm import data_parallel_traffic_s
from cost_models.training_comm import module_prefetch_s
from search_spaces.config import TrainingConfig
from search_spaces.specs import TrainingWorkload
from tests.cost_models.cost_model_specs import ideal_calibration
from tests.cost_models.cost_model_specs import make_cluster
from tests.cost_models.cost_model_specs import plain_gpt

NIC = 50e9  # the test GPU's NIC; 8 per node, NVLink 400 GB/s
FLAT = Framework(fsdp_multi_rail=False)
REGATHER = Framework(fsdp_regather_for_recompute=True)


def _plan(num_gpus, framework=MODERN, recompute="none", cal=None, **knobs):
    config = TrainingConfig(sharding="zero3", recompute=recompute, **knobs)
    workload = TrainingWorkload(seq_len=2048, global_batch_size=num_gpus)
    return make_plan(
        plain_gpt(),
        make_cluster(num_gpus),
        workload,
        config,
        cal or ideal_calibration(),
        framework,
    )


def test_each_layer_gather_pays_the_ring_latency():
    """64 ranks (8 nodes of 8): the ring gets 8 NICs per node crossing; each of the 8 layers'
    gathers and reduce-scatters adds (n-1) latency steps of its own."""
    alpha = 10e-6
    plan = _plan(64, cal=ideal_calibration(scaleout_latency_s=alpha))
    params = stage_params(plan.model, 1, 1, 1).dense
    bw = 8 * NIC
    per_pass = 63 / 64 * params * 2 / bw + 8 * 63 * alpha
    traffic = data_parallel_traffic_s(plan)
    assert traffic["parameter_gather"] == pytest.approx(2 * per_pass)
    reduce = 63 / 64 * params * 4 / bw + 8 * 63 * alpha  # fp32 gradients
    assert traffic["gradient_reduce"] == pytest.approx(reduce)


def test_flat_rings_put_each_gpus_share_on_its_own_nic():
    across = data_parallel_traffic_s(_plan(64, FLAT))["parameter_gather"]
    multi_rail = data_parallel_traffic_s(_plan(64))["parameter_gather"]
    assert across == pytest.approx(8 * multi_rail)
    # inside one NVLink node nothing crosses a NIC, so the framework makes no difference
    inside = data_parallel_traffic_s(_plan(8, FLAT))
    assert inside == pytest.approx(data_parallel_traffic_s(_plan(8)))


def test_recompute_regathers_only_where_the_framework_does():
    base = data_parallel_traffic_s(_plan(64, recompute="full"))["parameter_gather"]
    again = data_parallel_traffic_s(_plan(64, REGATHER, recompute="full"))["parameter_gather"]
    assert again == pytest.approx(1.5 * base)
    no_recompute = data_parallel_traffic_s(_plan(64, REGATHER))["parameter_gather"]
    assert no_recompute == pytest.approx(data_parallel_traffic_s(_plan(64))["parameter_gather"])


def test_module_prefetch_loses_where_a_small_module_precedes_a_large_one():
    weights = [3.0, 1.0, 4.0, 4.0]  # QKV, output projection, fc1, fc2 of a GPT layer (h^2)
    assert module_prefetch_s(12.0, 12.0, [1.0, 1.0, 1.0]) == pytest.approx(12.0)
    # balanced: max(3,1) + max(1,4) + max(4,4) + max(4,3) = 15 of 12
    assert module_prefetch_s(12.0, 12.0, weights) == pytest.approx(15.0)
    assert module_prefetch_s(12.0, 1.2, weights) == pytest.approx(12.0)  # compute hides all
    for compute, comm in ((1.0, 5.0), (5.0, 1.0), (3.0, 3.5)):
        assert module_prefetch_s(compute, comm, weights) >= max(compute, comm) - 1e-12


def test_module_prefetch_exposes_more_of_a_balanced_step():
    """Gathers about as long as the compute: layer-ahead prefetch hides them, one module
    ahead cannot (the output projection's slot is too short for fc1's weights)."""
    module = Framework(fsdp_prefetch_per_module=True)
    exposed = {}
    for name, framework in (("layer", MODERN), ("module", module)):
        plan = _plan(64, framework, micro_batch_size=1)
        mb = microbatch_compute(plan)
        traffic = sum(data_parallel_traffic_s(plan).values())
        assert 0.3 < traffic / mb.total_s < 3.0, "the case must be balanced to test this"
        exposed[name] = data_parallel_s(plan, mb)
    assert exposed["module"] > exposed["layer"]


def test_explained_step_matches_the_estimate_with_a_legacy_framework():
    """The framework flags reach the estimate (not only the helpers above)."""
    cluster = make_cluster(64)
    workload = TrainingWorkload(seq_len=2048, global_batch_size=64)
    config = TrainingConfig(sharding="zero3", recompute="full")
    cal = ideal_calibration()
    modern = estimate_training(plain_gpt(), cluster, workload, config, cal, MODERN)
    deepspeed = Framework(
        fsdp_multi_rail=False, fsdp_regather_for_recompute=True, fsdp_prefetch_per_module=True
    )
    legacy = estimate_training(plain_gpt(), cluster, workload, config, cal, deepspeed)
    assert legacy.breakdown["data_parallel"] > modern.breakdown["data_parallel"]
    assert legacy.breakdown["compute"] == pytest.approx(modern.breakdown["compute"])
