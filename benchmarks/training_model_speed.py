"""How fast is the analytical training model? Calls per second of ``estimate_training``.

Prints, measured in the same run on the same configurations (so machine speed cancels out):

- ``estimate_training`` one configuration at a time over a set of valid configurations of
  Llama 3.1 70B on 64 H100 (dense) and Qwen3-30B-A3B on 16 H100 (MoE);
- a baseline: the bare ``6 * N * tokens / (GPUs * peak * MFU)`` step-time formula on the same
  configurations (the one-line model of NeMo's auto-configurator), to show what the op-level
  model costs on top of it.

    .venv/bin/python benchmarks/training_model_speed.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

from cost_models import estimate_training
from search_spaces.catalog import load_model
from search_spaces.config import TrainingConfig
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

Case = tuple[ModelSpec, ClusterSpec, TrainingWorkload, TrainingConfig]


def _cases() -> list[Case]:
    """Valid configurations of a dense and an MoE job (invalid grid points are skipped)."""
    jobs = [
        (load_model("llama-3.1-70b"), ClusterSpec(gpu="h100-sxm-80gb", num_gpus=64), 1),
        (load_model("qwen3-30b-a3b"), ClusterSpec(gpu="h100-sxm-80gb", num_gpus=16), 8),
    ]
    grid = itertools.product((1, 2, 4, 8), (1, 2, 4), (1, 2), ("zero1", "zero3"), ("none", "full"))
    cases: list[Case] = []
    for (model, cluster, max_ep), (tp, pp, mbs, sharding, recompute) in itertools.product(
        jobs, grid
    ):
        workload = TrainingWorkload(seq_len=8192, global_batch_size=256)
        config = TrainingConfig(
            tp=tp,
            pp=pp,
            ep=max_ep,
            micro_batch_size=mbs,
            sharding=sharding,  # type: ignore[arg-type]
            recompute=recompute,
            dtype=DType.fp8,  # type: ignore[arg-type]
        )
        try:
            estimate_training(model, cluster, workload, config)
        except ValueError:
            continue
        cases.append((model, cluster, workload, config))
    return cases


def _six_n_d(
    model: ModelSpec, cluster: ClusterSpec, wl: TrainingWorkload, _: TrainingConfig
) -> float:
    tokens = wl.seq_len * wl.global_batch_size
    flops = 6.0 * model.active_params() * tokens
    return flops / (cluster.num_gpus * cluster.gpu.peak_flops(DType.bf16) * 0.4)


def _full(
    model: ModelSpec, cluster: ClusterSpec, wl: TrainingWorkload, cfg: TrainingConfig
) -> float:
    return estimate_training(model, cluster, wl, cfg).step_time_s


def _calls_per_s(fn: Callable[..., float], cases: list[Case], seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for case in cases:
            fn(*case)
        calls += len(cases)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    cases = _cases()
    model_rate = _calls_per_s(_full, cases, args.seconds)
    base_rate = _calls_per_s(_six_n_d, cases, args.seconds)
    print(f"configurations: {len(cases)} (dense and MoE, valid points of a small grid)")
    print(f"estimate_training   {model_rate:12,.0f} calls/s  ({1e6 / model_rate:6.1f} us/call)")
    print(f"6*N*D baseline      {base_rate:12,.0f} calls/s  ({1e6 / base_rate:6.1f} us/call)")
    print(f"ratio               {base_rate / model_rate:12.1f}x slower than the one-line formula")


if __name__ == "__main__":
    main()
