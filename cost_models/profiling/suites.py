"""What the micro-benchmarks measure: shapes, sizes and the small training steps.

Two sets of small single-device training shapes (head dimension 64, as in most models):
``FIT_STEPS`` go into every hardware profile and the calibration is fitted on them;
``HELD_OUT_STEPS`` (other combinations of width, length, depth, batch, activation and
recompute) are never part of a profile and serve to check that the fit lowers the analytical
model's error on shapes it has not seen. Both stay small enough to run on one CPU core in a
fraction of a second each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from search_spaces.config import TrainingConfig
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

StepShape = tuple[ModelSpec, TrainingWorkload, TrainingConfig]
KIB, MIB = 1 << 10, 1 << 20


def step_shape(
    hidden: int,
    heads: int,
    seq_len: int,
    *,
    layers: int = 2,
    vocab: int = 4096,
    micro_batch: int = 1,
    recompute: Literal["none", "selective", "full"] = "none",
    activation: Literal["gelu", "swiglu"] = "gelu",
) -> StepShape:
    """A small model, a one-micro-batch workload and a single-device configuration."""
    model = ModelSpec(
        name=f"bench-h{hidden}-l{layers}",
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        vocab_size=vocab,
        ffn_activation=activation,
    )
    workload = TrainingWorkload(seq_len=seq_len, global_batch_size=micro_batch)
    config = TrainingConfig(
        micro_batch_size=micro_batch,
        recompute=recompute,
        sharding="none",
    )
    return model, workload, config


FIT_STEPS: tuple[StepShape, ...] = (
    step_shape(256, 4, 128),
    step_shape(384, 6, 64, micro_batch=2, activation="swiglu"),
    step_shape(192, 3, 256, vocab=8192, recompute="selective"),
    step_shape(320, 5, 128, recompute="full"),
    step_shape(128, 2, 128, micro_batch=4, vocab=2048),
)
HELD_OUT_STEPS: tuple[StepShape, ...] = (
    step_shape(320, 5, 192, vocab=6144),
    step_shape(256, 4, 128, layers=3, micro_batch=2, recompute="full"),
    step_shape(448, 7, 64, activation="swiglu"),
    step_shape(128, 2, 512, vocab=8192, recompute="selective"),
    step_shape(384, 6, 128, micro_batch=2),
)


@dataclass(frozen=True)
class BenchSuite:
    gemm_shapes: tuple[tuple[int, int, int], ...]
    attention_shapes: tuple[tuple[int, int, int, int], ...]  # batch, heads, seq, head_dim
    memory_sizes: tuple[int, ...]
    collective_sizes: tuple[int, ...]
    collective_iters: int
    steps: tuple[StepShape, ...]
    min_time_s: float
    step_rounds: int


FULL = BenchSuite(
    gemm_shapes=(
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (512, 2048, 512),
        (2048, 512, 2048),
        (256, 4096, 256),
    ),
    attention_shapes=((1, 4, 256, 64), (1, 8, 512, 64), (2, 4, 1024, 64), (1, 2, 2048, 128)),
    memory_sizes=(1 * MIB, 16 * MIB, 64 * MIB, 256 * MIB),
    collective_sizes=(4 * KIB, 64 * KIB, 1 * MIB, 8 * MIB, 32 * MIB),
    collective_iters=5,
    steps=FIT_STEPS,
    min_time_s=0.2,
    step_rounds=3,
)
QUICK = BenchSuite(
    gemm_shapes=((256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (512, 2048, 512)),
    attention_shapes=((1, 4, 256, 64), (1, 8, 512, 64)),
    memory_sizes=(4 * MIB, 64 * MIB),
    collective_sizes=(64 * KIB, 1 * MIB, 4 * MIB),
    collective_iters=3,
    steps=FIT_STEPS,
    min_time_s=0.05,
    step_rounds=2,
)


def suite(quick: bool) -> BenchSuite:
    return QUICK if quick else FULL
