"""Memory terms against README formula 3 and Korthikanti et al.'s Table 2."""

from __future__ import annotations

import pytest

from cost_models.memory import GIB
from cost_models.memory import MEMORY_TERMS
from cost_models.memory import activation_bytes_per_layer
from cost_models.memory import inflight_layer_microbatches
from cost_models.memory import model_state_bytes_per_param
from cost_models.memory import replicated_kv_width
from cost_models.memory import stage_params
from cost_models.memory import training_memory
from search_spaces.config import TrainingConfig
from search_spaces.specs import DType
from tests.cost_models.cost_model_specs import ideal_calibration
from tests.cost_models.cost_model_specs import llama_like
from tests.cost_models.cost_model_specs import plain_gpt
from tests.cost_models.cost_model_specs import small_moe


@pytest.mark.parametrize(
    ("sharding", "d", "expected"),
    [
        ("none", 8, 18.0),  # 2 bf16 weight + 4 fp32 grad + 12 Adam (Megatron: 18)
        ("zero1", 8, 6 + 12 / 8),  # distributed optimizer: 6 + 12/d
        ("zero2", 8, 2 + 16 / 8),
        ("zero3", 8, 18 / 8),
        ("zero1", 1, 18.0),
    ],
)
def test_model_state_bytes_per_param(sharding, d, expected):
    assert sum(model_state_bytes_per_param(sharding, d).values()) == pytest.approx(expected)


# Korthikanti et al. 2022, Table 2, for a GPT layer (MHA, GeLU, f = 4h, dropout), in bytes.
S, B, T = 2048, 2, 8


@pytest.fixture
def gpt():
    return plain_gpt()


def sbh(model):
    return S * B * model.hidden_size


def test_table2_no_parallelism(gpt):
    a, h = gpt.num_attention_heads, gpt.hidden_size
    got = activation_bytes_per_layer(
        gpt, seq_len=S, micro_batch_size=B, flash_attention=False, dropout=True
    )
    assert got == pytest.approx(sbh(gpt) * (34 + 5 * a * S / h))


def test_table2_tensor_parallel(gpt):
    a, h = gpt.num_attention_heads, gpt.hidden_size
    common = {
        "seq_len": S,
        "micro_batch_size": B,
        "tp": T,
        "flash_attention": False,
        "dropout": True,
    }
    tp_only = activation_bytes_per_layer(gpt, **common)
    assert tp_only == pytest.approx(sbh(gpt) * (10 + 24 / T + 5 * a * S / (h * T)))
    tp_sp = activation_bytes_per_layer(gpt, sequence_parallel=True, **common)
    assert tp_sp == pytest.approx(sbh(gpt) * (34 / T + 5 * a * S / (h * T)))


def test_table2_selective_and_full_recompute(gpt):
    common = {
        "seq_len": S,
        "micro_batch_size": B,
        "tp": T,
        "flash_attention": False,
        "dropout": True,
    }
    sel = activation_bytes_per_layer(gpt, recompute="selective", **common)
    assert sel == pytest.approx(sbh(gpt) * (10 + 24 / T))
    sel_sp = activation_bytes_per_layer(
        gpt, recompute="selective", sequence_parallel=True, **common
    )
    assert sel_sp == pytest.approx(sbh(gpt) * 34 / T)
    full = activation_bytes_per_layer(gpt, recompute="full", **common)
    assert full == pytest.approx(2 * sbh(gpt))
    full_sp = activation_bytes_per_layer(gpt, recompute="full", sequence_parallel=True, **common)
    assert full_sp == pytest.approx(2 * sbh(gpt) / T)


def test_flash_attention_drops_the_score_term(gpt):
    flash = activation_bytes_per_layer(gpt, seq_len=S, micro_batch_size=B, dropout=True)
    assert flash == pytest.approx(34 * sbh(gpt))
    no_dropout = activation_bytes_per_layer(gpt, seq_len=S, micro_batch_size=B)
    assert no_dropout == pytest.approx(32 * sbh(gpt))  # the two 1-byte masks are gone


def test_gqa_swiglu_constant_rederived():
    """Llama-style layer, no dropout: 8h (norm, QKV and MLP inputs) + 2q (Q) + 2q (O)
    + 4kv (K, V) + 2*3f (gate, up, fc2 input) bytes per token."""
    model = llama_like()
    h, q, kv, f = 4096, 4096, 1024, 14336
    per_token = 8 * h + 4 * q + 4 * kv + 6 * f
    got = activation_bytes_per_layer(model, seq_len=S, micro_batch_size=B)
    assert got == pytest.approx(S * B * per_token)
    assert per_token / h == pytest.approx(34.0)  # the GQA savings cancel the gated MLP's cost


def test_moe_layer_stores_top_k_copies():
    model = small_moe()
    h, f, k = 2048, 768, 8
    dense = activation_bytes_per_layer(model, seq_len=S, micro_batch_size=B)
    moe = activation_bytes_per_layer(model, seq_len=S, micro_batch_size=B, moe=True)
    routed = k * 2 * (h + 3 * f) + 4 * 128  # dispatched inputs + expert intermediates + router
    assert moe - dense == pytest.approx(S * B * (routed - 2 * 3 * model.ffn_hidden_size))


def test_fp8_keeps_8bit_gemm_inputs():
    """QKV, fc1 (h each), O (q) and fc2 (f) inputs at 1 byte instead of 2."""
    model = llama_like()
    h, q, f = 4096, 4096, 14336
    bf16 = activation_bytes_per_layer(model, seq_len=S, micro_batch_size=B)
    fp8 = activation_bytes_per_layer(model, seq_len=S, micro_batch_size=B, gemm_input_bytes=1)
    assert bf16 - fp8 == pytest.approx(S * B * (2 * h + q + f))


def test_inflight_microbatches_of_1f1b_and_interleaving():
    assert inflight_layer_microbatches(32, 1, 1, 16) == 32
    assert inflight_layer_microbatches(32, 4, 1, 16) == 32  # pp micro-batches of L/pp layers
    assert inflight_layer_microbatches(32, 4, 1, 2) == 16  # only 2 micro-batches exist
    assert inflight_layer_microbatches(32, 4, 2, 16) == pytest.approx(32 * (1 + 3 / 8))


def test_stage_params_put_embeddings_on_the_first_stage(gpt):
    whole = stage_params(gpt, tp=1, pp=1, ep=1)
    assert whole.dense == pytest.approx(gpt.total_params() - gpt.hidden_size)  # final norm
    split = stage_params(gpt, tp=2, pp=4, ep=1)
    layers = gpt.total_params() - gpt.hidden_size - gpt.embedding_params()
    assert split.dense == pytest.approx(layers / 8 + gpt.vocab_size * gpt.hidden_size / 2)
    moe = small_moe()
    experts = moe.num_layers * moe.num_experts * moe.expert_params()
    assert stage_params(moe, tp=1, pp=2, ep=8).expert == pytest.approx(experts / 16)


def test_training_memory_breakdown_by_hand(gpt):
    config = TrainingConfig(
        tp=2, micro_batch_size=2, sharding="zero1", recompute="selective", sequence_parallel=True
    )
    dp, m, cal = 4, 4, ideal_calibration()
    est = training_memory(gpt, S, config, dp, m, cal)
    psi = stage_params(gpt, 2, 1, 1).dense
    acts = gpt.num_layers * sbh(gpt) * 32 / 2 + 6 * S * 2 * gpt.vocab_size / 2  # + logits
    assert set(est.breakdown_gib) == set(MEMORY_TERMS)
    assert est.breakdown_gib["weights"] == pytest.approx(psi * 2 / GIB)
    assert est.breakdown_gib["gradients"] == pytest.approx(psi * 4 / GIB)
    assert est.breakdown_gib["optimizer_state"] == pytest.approx(psi * 12 / dp / GIB)
    assert est.breakdown_gib["activations"] == pytest.approx(acts / GIB)
    assert est.breakdown_gib["working_margin"] == 0.0
    assert est.total_gib == pytest.approx(sum(est.breakdown_gib.values()))
    assert est.binding_term == max(est.breakdown_gib, key=lambda k: est.breakdown_gib[k])


def test_working_margin_is_fixed_plus_fragmentation(gpt):
    cal = ideal_calibration(working_margin_gib=3.0, fragmentation_fraction=0.05)
    est = training_memory(gpt, S, TrainingConfig(), 8, 1, cal)
    rest = sum(v for k, v in est.breakdown_gib.items() if k != "working_margin")
    assert est.breakdown_gib["working_margin"] == pytest.approx(3.0 + 0.05 * rest)


def test_fp16_training_keeps_fp16_gradients_and_an_fp32_copy():
    """Megatron's fp16 path (README formula 3): 20 bytes per parameter, 4 + 16/d distributed."""
    assert sum(model_state_bytes_per_param("none", 8, DType.fp16).values()) == pytest.approx(20)
    zero1 = model_state_bytes_per_param("zero1", 8, DType.fp16)
    assert sum(zero1.values()) == pytest.approx(4 + 16 / 8)


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    """8 KV heads of 128 at tp=16: each rank holds one whole head (128 wide), not 64."""
    model = llama_like(num_attention_heads=32, num_kv_heads=8)
    assert replicated_kv_width(model, 8) == 0.0
    assert replicated_kv_width(model, 16) == 64.0
    extra_weights = 2 * 4096 * 64 * model.num_layers  # K and V projections, per rank
    tp16 = stage_params(model, 16, 1, 1).dense
    no_replication = (stage_params(model, 8, 1, 1).dense) / 2
    assert tp16 == pytest.approx(no_replication + extra_weights)
    acts = [
        activation_bytes_per_layer(
            model, seq_len=1024, micro_batch_size=1, tp=t, sequence_parallel=True
        )
        for t in (8, 16)
    ]
    assert acts[1] == pytest.approx(acts[0] / 2 + 4 * 64 * 1024)  # K and V, bf16
