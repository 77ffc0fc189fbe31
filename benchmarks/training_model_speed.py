"""How fast is the analytical training model? Calls per second of ``estimate_training`` and
configurations per second of the vectorised ``estimate_training_batch``.

Prints, measured in the same run on the same configurations (so machine speed cancels out):

- ``estimate_training`` one configuration at a time over a set of valid configurations of
  Llama 3.1 70B on 64 H100 (dense) and Qwen3-30B-A3B on 16 H100 (MoE);
- a baseline: the bare ``6 * N * tokens / (GPUs * peak * MFU)`` step-time formula on the same
  configurations (the one-line model of NeMo's auto-configurator), to show what the op-level
  model costs on top of it;
- the vectorised path against the one-by-one scalar loop over every valid point of two large
  spaces (Llama 3.1 70B on 1024 H100, Qwen3-235B-A22B on 512 H100), single-threaded: numpy
  over knob columns, numpy including the columns' construction from ``TrainingConfig``s, and
  ``estimate_training`` in a loop; with the ratio and the largest relative difference between
  the two paths;
- the tuner's analytical evaluation of chunks of 128 configurations into trial outcomes
  (``tuner.training_kind``): the batch evaluator against the per-configuration evaluator.

    .venv/bin/python benchmarks/training_model_speed.py [--seconds 2] [--skip-scalar-sweep]
"""

from __future__ import annotations

import os

# One core: numpy's elementwise kernels are single-threaded anyway, but a BLAS pool could
# otherwise spin up threads; these must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from cost_models import estimate_training  # noqa: E402
from cost_models.vectorised import TrainingBatch  # noqa: E402
from cost_models.vectorised import estimate_training_batch  # noqa: E402
from search_spaces.catalog import load_model  # noqa: E402
from search_spaces.config import TrainingConfig  # noqa: E402
from search_spaces.specs import ClusterSpec  # noqa: E402
from search_spaces.specs import DType  # noqa: E402
from search_spaces.specs import ModelSpec  # noqa: E402
from search_spaces.specs import TrainingWorkload  # noqa: E402
from search_spaces.training_space import TrainingSpace  # noqa: E402

Case = tuple[ModelSpec, ClusterSpec, TrainingWorkload, TrainingConfig]
Job = tuple[str, ModelSpec, ClusterSpec, TrainingWorkload]


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
            sharding=sharding,
            recompute=recompute,
            dtype=DType.fp8,
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


def _big_jobs() -> list[Job]:
    """Two large real spaces: a dense job on 1024 GPUs and an MoE job on 512."""
    h100 = "h100-sxm-80gb"
    return [
        (
            "Llama-3.1-70B on 1024 H100",
            load_model("llama-3.1-70b"),
            ClusterSpec(gpu=h100, num_gpus=1024),
            TrainingWorkload(seq_len=8192, global_batch_size=1024),
        ),
        (
            "Qwen3-235B-A22B (MoE) on 512 H100",
            load_model("qwen3-235b-a22b"),
            ClusterSpec(gpu=h100, num_gpus=512),
            TrainingWorkload(seq_len=8192, global_batch_size=2048),
        ),
    ]


def _repeat_per_s(fn: Callable[[], int], seconds: float) -> float:
    """Configurations per second of ``fn`` (returns how many it evaluated), run repeatedly
    for at least ``seconds`` and at least once."""
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def _sweep(job: Job, seconds: float, scalar: bool) -> None:
    """Vectorised vs one-by-one over every valid point of ``job``'s space."""
    name, model, cluster, workload = job
    configs = list(TrainingSpace(model, cluster, workload).enumerate())
    columns = TrainingBatch.from_configs(configs)
    batch = estimate_training_batch(model, cluster, workload, columns)
    n = len(configs)

    def vectorised() -> int:
        estimate_training_batch(model, cluster, workload, columns)
        return n

    def from_configs() -> int:
        estimate_training_batch(model, cluster, workload, TrainingBatch.from_configs(configs))
        return n

    vec_rate = _repeat_per_s(vectorised, seconds)
    conv_rate = _repeat_per_s(from_configs, seconds)
    print(f"{name}: {n:,} valid configurations")
    print(f"  vectorised (numpy columns)        {vec_rate:12,.0f} configs/s")
    print(f"  vectorised (from TrainingConfig)  {conv_rate:12,.0f} configs/s")
    if not scalar:
        return
    start = time.perf_counter()
    step = np.array([estimate_training(model, cluster, workload, c).step_time_s for c in configs])
    loop_rate = n / (time.perf_counter() - start)
    worst = float(np.max(np.abs(batch.step_time_s - step) / step))
    print(f"  one-by-one estimate_training      {loop_rate:12,.0f} configs/s")
    print(f"  ratio                             {vec_rate / loop_rate:12.0f}x faster vectorised")
    print(f"  largest relative difference of step_time_s: {worst:.1e}")


def _tuner_chunks(job: Job, seconds: float, size: int = 128) -> None:
    """The tuner's analytical evaluation of chunks of ``size`` configurations (trial outcomes
    with their details): the batch evaluator against the per-configuration one."""
    from search_spaces.job_spec import TrainingJobSpec
    from tuner.training_kind import evaluate_training_analytical
    from tuner.training_kind import evaluate_training_analytical_batch

    name, model, cluster, workload = job
    spec = TrainingJobSpec(model=model, cluster=cluster, workload=workload)
    configs = list(TrainingSpace(model, cluster, workload).enumerate(limit=20 * size))
    chunks = [configs[i : i + size] for i in range(0, len(configs), size)]

    def together() -> int:
        for chunk in chunks:
            evaluate_training_analytical_batch(spec, chunk)
        return len(configs)

    def one_by_one() -> int:
        for chunk in chunks:
            for config in chunk:
                evaluate_training_analytical(spec, config)
        return len(configs)

    batch_rate = _repeat_per_s(together, seconds)
    loop_rate = _repeat_per_s(one_by_one, seconds)
    print(f"tuner chunks of {size}, {name} ({len(configs):,} configurations, trial outcomes):")
    print(f"  batch evaluator (vectorised)      {batch_rate:12,.0f} configs/s")
    print(f"  per-configuration evaluator       {loop_rate:12,.0f} configs/s")
    print(f"  ratio                             {batch_rate / loop_rate:12.1f}x faster vectorised")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument(
        "--skip-scalar-sweep",
        action="store_true",
        help="time only the vectorised path on the large spaces (the scalar loop takes ~10 s)",
    )
    args = parser.parse_args()
    cases = _cases()
    model_rate = _calls_per_s(_full, cases, args.seconds)
    base_rate = _calls_per_s(_six_n_d, cases, args.seconds)
    print(f"configurations: {len(cases)} (dense and MoE, valid points of a small grid)")
    print(f"estimate_training   {model_rate:12,.0f} calls/s  ({1e6 / model_rate:6.1f} us/call)")
    print(f"6*N*D baseline      {base_rate:12,.0f} calls/s  ({1e6 / base_rate:6.1f} us/call)")
    print(f"ratio               {base_rate / model_rate:12.1f}x slower than the one-line formula")
    print("\nvectorised path vs one-by-one loop, same configurations, single-threaded:")
    for job in _big_jobs():
        _sweep(job, args.seconds, not args.skip_scalar_sweep)
    print()
    _tuner_chunks(_big_jobs()[0], args.seconds)


if __name__ == "__main__":
    main()
