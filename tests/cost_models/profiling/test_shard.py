"""The per-GPU shard of a candidate and how a too-large shard is planned down (no torch)."""

from __future__ import annotations

from cost_models.profiling.shard import full_shard
from cost_models.profiling.shard import plan_shard
from cost_models.profiling.shard import shard_bytes
from cost_models.profiling.shard import shard_params
from search_spaces.catalog import load_model
from search_spaces.config import TrainingConfig
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload

DENSE = ModelSpec(
    name="dense", num_layers=8, hidden_size=512, num_attention_heads=8, vocab_size=8000
)
WORKLOAD = TrainingWorkload(seq_len=1024, global_batch_size=64)


def test_unsharded_params_match_the_architecture() -> None:
    shard = full_shard(DENSE, WORKLOAD, TrainingConfig(), DENSE.num_layers)
    assert shard_params(shard) == DENSE.total_params()


def test_widths_are_divided_by_their_parallel_sizes() -> None:
    moe = load_model("mixtral-8x7b")
    config = TrainingConfig(tp=2, pp=4, cp=2, ep=4, micro_batch_size=2)
    shard = full_shard(moe, WORKLOAD, config, layers=2)
    assert shard.heads == moe.num_attention_heads // 2
    assert shard.kv_heads == moe.num_kv_heads // 2
    assert shard.ffn_hidden_size == moe.ffn_hidden_size // 2
    assert shard.local_experts == moe.num_experts // 4 and shard.ep == 4
    assert shard.vocab_size == moe.vocab_size // 2
    assert shard.seq_len == WORKLOAD.seq_len // 2
    # ring attention: local queries see (cp+1)/(2cp) of the sequence on average, unmasked
    assert shard.kv_len == round(WORKLOAD.seq_len * 3 / 4) and not shard.causal
    assert not shard.with_embedding  # a later pipeline stage: the profiled one is the last


def test_kv_heads_never_drop_below_one() -> None:
    gqa = DENSE.model_copy(update={"num_kv_heads": 2})
    assert full_shard(gqa, WORKLOAD, TrainingConfig(tp=8), 1).kv_heads == 1


def test_plan_keeps_everything_when_it_fits() -> None:
    plan = plan_shard(DENSE, WORKLOAD, TrainingConfig(), max_layers=64, budget_bytes=1e12)
    assert plan.shard.num_layers == DENSE.num_layers and not plan.notes
    assert plan.time_scale == plan.memory_scale == 1.0


def test_plan_profiles_fewer_layers_and_says_so() -> None:
    plan = plan_shard(DENSE, WORKLOAD, TrainingConfig(), max_layers=2, budget_bytes=1e12)
    assert plan.shard.num_layers == 2 and plan.stage_layers == 8 and plan.scaled_layers
    assert "2 of the stage's 8 layers" in plan.notes[0]


def test_plan_caps_the_hidden_size_when_one_layer_does_not_fit() -> None:
    big = load_model("llama-3.1-70b")
    budget = 2e9
    plan = plan_shard(big, WORKLOAD, TrainingConfig(pp=8), max_layers=4, budget_bytes=budget)
    assert plan.shard.num_layers == 1
    assert plan.shard.hidden_size < big.hidden_size
    assert shard_bytes(plan.shard) <= budget
    assert plan.time_scale > 1 and plan.memory_scale > 1
    assert any("hidden size" in n for n in plan.notes)
