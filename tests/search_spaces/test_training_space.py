"""Training search space: default ranges, validity rules, enumeration, counts, Optuna view.

Specs are built inline (not from the catalog) so the expectations below can be checked by hand.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

import optuna
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from search_spaces.config import TrainingConfig
from search_spaces.rules import KNOB_ORDER
from search_spaces.rules import RULES
from search_spaces.specs import ClusterSpec
from search_spaces.specs import DType
from search_spaces.specs import GPUSpec
from search_spaces.specs import ModelSpec
from search_spaces.specs import TrainingWorkload
from search_spaces.training_space import TrainingSpace


def gpu(name: str, peaks: dict[str, float], domain: int = 8) -> GPUSpec:
    return GPUSpec(
        id=name.lower().replace(" ", "-"),
        name=name,
        generation="test",
        peak_tflops_dense=peaks,
        memory_gib=80,
        memory_bandwidth_gb_per_s=2000,
        nvlink_bandwidth_gb_per_s=300,
        nvlink_domain_size=domain,
        scaleout_bandwidth_gb_per_s=25,
        gpus_per_node=min(domain, 8),
        price_per_gpu_hour_usd=2.0,
    )


A100 = gpu("A100 80GB", {"fp32": 19.5, "bf16": 312, "fp16": 312, "int8": 624})
H100 = gpu("H100 SXM", {"bf16": 989, "fp16": 989, "fp8": 1979})
B200_NVL72 = gpu("B200 NVL72", {"bf16": 2250, "fp8": 4500, "fp4": 9000}, domain=72)

DENSE = ModelSpec(
    name="dense-8b", num_layers=32, hidden_size=4096, num_attention_heads=32, num_kv_heads=8,
    vocab_size=32000,
)  # fmt: skip
ODD_KV = ModelSpec(
    name="odd-kv", num_layers=32, hidden_size=3072, num_attention_heads=24, num_kv_heads=6,
    vocab_size=32000,
)  # fmt: skip
MOE = ModelSpec(
    name="moe-8e", num_layers=32, hidden_size=4096, num_attention_heads=32, num_kv_heads=8,
    vocab_size=32000, num_experts=8, experts_per_token=2, ffn_activation="swiglu",
)  # fmt: skip


def make_space(
    model: ModelSpec = DENSE,
    *,
    accel: GPUSpec = H100,
    gpus: int = 16,
    seq: int = 4096,
    gbs: int = 64,
    space: dict[str, list[Any]] | None = None,
) -> TrainingSpace:
    cluster = ClusterSpec(gpu=accel, num_gpus=gpus)
    return TrainingSpace(
        model, cluster, TrainingWorkload(seq_len=seq, global_batch_size=gbs), space
    )


# A valid baseline on 16 GPUs: dp = 16 / (2*2*1) = 4.
BASE: dict[str, Any] = dict(
    tp=2, pp=2, cp=1, ep=1, vpp=1, micro_batch_size=1, sharding="zero1",
    recompute="selective", sequence_parallel=True, dtype="bf16",
)  # fmt: skip


def names(violations: list[str]) -> list[str]:
    return [v.split(":", 1)[0] for v in violations]


# (case id, make_space kwargs, config overrides on BASE, expected rule names in order)
RULE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("baseline", {}, {}, []),
    ("tp3_heads", {}, {"tp": 3}, ["tp_divides_heads", "model_parallel_divides_gpus"]),
    # 24 heads / 6 KV heads: tp=4 divides 24 but neither divides 6 nor is a multiple of it.
    ("tp4_kv6", {"model": ODD_KV}, {"tp": 4}, ["tp_divides_heads"]),
    ("tp2_kv6", {"model": ODD_KV}, {"tp": 2}, []),
    # tp=16 > 8 KV heads: KV heads replicated, allowed (dp = 1, so no sharding).
    ("tp16_kv_replicated", {}, {"tp": 16, "pp": 1, "sharding": "none"}, []),
    # 24 GPUs and batch 48 so dp = 4 or 6 fits; 32 layers % 3 != 0.
    ("pp3_layers", {"gpus": 24, "gbs": 48}, {"pp": 3}, ["pp_divides_layers"]),
    ("pp2_layers", {"gpus": 24, "gbs": 48}, {"pp": 2}, []),
    # seq 4100: 4100 % (2*4) = 4, 4100 % (2*2) = 0.
    ("cp4_seq4100", {"seq": 4100}, {"pp": 1, "cp": 4}, ["cp_divides_seq"]),
    ("cp2_seq4100", {"seq": 4100}, {"pp": 1, "cp": 2}, []),
    ("mp32_on16", {}, {"tp": 8, "pp": 4}, ["model_parallel_divides_gpus"]),
    ("vpp_without_pp", {}, {"pp": 1, "vpp": 2}, ["vpp_needs_pp"]),
    # 32 layers % (2*3) != 0; 32 % (2*4) == 0 (num_microbatches = 64/4 = 16, a multiple of 2).
    ("vpp3_layers", {}, {"vpp": 3}, ["vpp_divides_layers"]),
    ("vpp4_layers", {}, {"vpp": 4}, []),
    # tp=1, pp=4: dp=4; mbs=8 -> 64/(4*8) = 2 micro-batches, not a multiple of pp=4.
    (
        "vpp_microbatches_2",
        {},
        {"tp": 1, "pp": 4, "vpp": 2, "micro_batch_size": 8, "sequence_parallel": False},
        ["vpp_microbatches"],
    ),
    (
        "vpp_microbatches_4",
        {},
        {"tp": 1, "pp": 4, "vpp": 2, "micro_batch_size": 4, "sequence_parallel": False},
        [],
    ),
    ("ep_on_dense", {}, {"ep": 2}, ["ep_divides_experts"]),
    # dp = 16: ep=16 fits dp but not the 8 experts.
    (
        "ep16_8experts",
        {"model": MOE},
        {"tp": 1, "pp": 1, "ep": 16, "sequence_parallel": False},
        ["ep_divides_experts"],
    ),
    ("ep8_dp4", {"model": MOE}, {"ep": 8}, ["ep_divides_dp"]),
    # tp=2, cp=2: dp = 4, dp*cp = 8: ep=8 fits the context-parallel ranks too.
    ("ep8_dp4_cp2", {"model": MOE}, {"pp": 1, "cp": 2, "ep": 8}, []),
    # tp=pp=1: dp = 16; 16*8 = 128 does not divide 64, 16*4 = 64 does.
    (
        "batch_mbs8",
        {},
        {"tp": 1, "pp": 1, "micro_batch_size": 8, "sequence_parallel": False},
        ["batch_divisible"],
    ),
    (
        "batch_mbs4",
        {},
        {"tp": 1, "pp": 1, "micro_batch_size": 4, "sequence_parallel": False},
        [],
    ),
    ("zero1_dp1", {}, {"tp": 8, "pp": 2}, ["sharding_needs_dp"]),
    ("none_dp1", {}, {"tp": 8, "pp": 2, "sharding": "none"}, []),
    # dp = 1 but cp = 2 ranks hold the same weights: zero1 shards over them.
    ("zero1_dp1_cp2", {}, {"tp": 8, "pp": 1, "cp": 2}, []),
    ("zero3_pp2", {}, {"sharding": "zero3"}, ["zero3_with_pp"]),
    ("zero3_pp2_dp1", {}, {"tp": 8, "sharding": "zero3"}, ["sharding_needs_dp", "zero3_with_pp"]),
    ("zero3_pp1", {}, {"pp": 1, "sharding": "zero3"}, []),
    ("sp_tp1", {}, {"tp": 1}, ["sp_needs_tp"]),
    ("no_sp_tp1", {}, {"tp": 1, "sequence_parallel": False}, []),
    ("no_sp_tp2", {}, {"sequence_parallel": False}, []),
    ("fp8_a100", {"accel": A100}, {"dtype": "fp8"}, ["dtype_supported"]),
    ("bf16_a100", {"accel": A100}, {}, []),
    ("fp8_h100", {}, {"dtype": "fp8"}, []),
    ("fp4_h100", {}, {"dtype": "fp4"}, ["dtype_supported"]),
    ("fp4_b200", {"accel": B200_NVL72}, {"dtype": "fp4"}, []),
]


@pytest.mark.parametrize(
    ("kwargs", "overrides", "expected"),
    [c[1:] for c in RULE_CASES],
    ids=[c[0] for c in RULE_CASES],
)
def test_rules_accept_and_reject(kwargs, overrides, expected):
    space = make_space(**kwargs)
    config = TrainingConfig.model_validate({**BASE, **overrides})
    found = space.violations(config)
    assert names(found) == expected
    assert space.is_valid(config) is (expected == [])
    for entry in found:
        rule, _, sentence = entry.partition(": ")
        assert rule in {r.name for r in RULES} and len(sentence) > 20


def test_rules_are_all_exercised_by_the_cases():
    exercised = {n for case in RULE_CASES for n in case[3]}
    assert exercised == {r.name for r in RULES}


def test_messages_name_the_values_and_the_fix():
    def msg(kwargs: dict[str, Any], overrides: dict[str, Any]) -> str:
        return make_space(**kwargs).violations(
            TrainingConfig.model_validate({**BASE, **overrides})
        )[0]

    assert "tp=3" in (m := msg({}, {"tp": 3})) and "use tp in 1, 2, 4, 8, 16" in m
    assert "num_kv_heads=6" in (m := msg({"model": ODD_KV}, {"tp": 4})) and "replicate" in m
    assert "use pp in 1, 2, 4, 8, 16" in msg({"gpus": 24}, {"pp": 3})
    m = msg({}, {"tp": 1, "pp": 1, "micro_batch_size": 8, "sequence_parallel": False})
    assert "16*8 = 128" in m and "use micro_batch_size in 1, 2, 4" in m
    # dp = 16 does not divide 24: no micro_batch_size can help, change the parallelism.
    m = msg({"gbs": 24}, {"tp": 1, "pp": 1, "sequence_parallel": False})
    assert m.startswith("batch_divisible: dp=16 does not divide global_batch_size=24")
    assert "A100 80GB" in (m := msg({"accel": A100}, {"dtype": "fp8"})) and "use dtype in bf16" in m
    assert "ep in 1, 2, 4" in msg({"model": MOE}, {"ep": 8})


# -- default ranges -------------------------------------------------------------------------------


def test_default_ranges():
    space = make_space(accel=A100, gpus=1024, seq=2048, gbs=1536)
    k = space.knobs
    assert list(k) == list(TrainingConfig.model_fields)
    assert k["tp"] == [1, 2, 4, 8]  # NVLink domain of 8
    assert k["pp"] == [1, 2, 4, 8, 16, 32]  # divisors of 32 layers
    assert k["cp"] == [1]  # seq 2048 < 8192
    assert k["ep"] == [1]  # dense
    assert k["vpp"] == [1, 2, 4]
    assert k["micro_batch_size"] == [1, 2, 4, 8]
    assert k["sharding"] == ["none", "zero1", "zero2", "zero3"]
    assert k["recompute"] == ["none", "selective", "full"]
    assert k["sequence_parallel"] == [False, True]
    assert k["dtype"] == [DType.bf16]  # no fp8 on an A100


def test_default_ranges_scale_with_model_cluster_and_workload():
    big = ModelSpec(num_layers=126, hidden_size=16384, num_attention_heads=128, vocab_size=128256)
    k = make_space(big, gpus=1024, seq=8192, gbs=2).knobs
    assert k["pp"] == [1, 2, 3, 6, 7, 9, 14, 18, 21, 42, 63]  # divisors of 126 up to 64
    assert k["cp"] == [1, 2, 4, 8, 16]  # long sequences
    assert k["micro_batch_size"] == [1, 2]  # capped by the global batch
    assert k["dtype"] == [DType.bf16, DType.fp8]
    assert make_space(gpus=4).knobs["tp"] == [1, 2, 4]  # capped by the cluster
    assert make_space(gpus=4).knobs["cp"] == [1]
    assert make_space(seq=32768, gpus=4).knobs["cp"] == [1, 2, 4]
    nvl72 = make_space(accel=B200_NVL72, gpus=144).knobs
    assert nvl72["tp"] == [1, 2, 4, 8, 16, 32]  # 72-GPU domain, capped by 32 heads
    assert nvl72["dtype"] == [DType.bf16, DType.fp8, DType.fp4]
    assert make_space(MOE, gpus=4).knobs["ep"] == [1, 2, 4]
    assert make_space(MOE, gpus=64).knobs["ep"] == [1, 2, 4, 8]
    tiny = ModelSpec(num_layers=6, hidden_size=256, num_attention_heads=4, vocab_size=1000)
    assert make_space(tiny, gpus=64).knobs["pp"] == [1, 2, 3, 6]
    assert make_space(tiny, gpus=64).knobs["tp"] == [1, 2, 4]  # capped by 4 heads


def test_user_values_are_used_as_given_normalised():
    space = make_space(space={"tp": [8, 2, 2], "dtype": ["fp8", "bf16"], "sharding": ["zero3"]})
    assert space.knobs["tp"] == [8, 2]
    assert space.knobs["dtype"] == [DType.fp8, DType.bf16]
    assert space.knobs["sharding"] == ["zero3"]
    assert space.knobs["pp"] == [1, 2, 4, 8, 16]  # unset knob: default range
    with pytest.raises(ValueError, match="unknown training knob 'tpp'"):
        make_space(space={"tpp": [1]})


# -- enumeration and counts -----------------------------------------------------------------------

# 8 GPUs, 32 layers, 32 heads, global batch 16, seq 2048. Over tp x pp x sharding x sp:
#   (tp, pp) = (8, 2) needs 16 GPUs                       -> model_parallel_divides_gpus: 1*2*2 = 4
#   dp = 1 at (4, 2) and (8, 1) with sharding=zero1       -> sharding_needs_dp: 2 * 2 sp = 4
#   tp = 1 with sequence_parallel=True at pp = 1, 2       -> sp_needs_tp: 2 pp * 2 sharding = 4
# valid = 32 - 12 = 20.
SMALL: dict[str, list[Any]] = {
    "tp": [1, 2, 4, 8], "pp": [1, 2], "cp": [1], "ep": [1], "vpp": [1], "micro_batch_size": [1],
    "sharding": ["none", "zero1"], "recompute": ["selective"], "sequence_parallel": [False, True],
    "dtype": ["bf16"],
}  # fmt: skip


def small_space() -> TrainingSpace:
    mha = ModelSpec(num_layers=32, hidden_size=4096, num_attention_heads=32, vocab_size=32000)
    return make_space(mha, gpus=8, seq=2048, gbs=16, space=SMALL)


def test_small_space_hand_counted():
    space = small_space()
    assert space.total_points() == 32
    assert space.count_valid() == 20
    assert len(list(space.enumerate())) == 20
    assert space.rejection_counts() == {
        "model_parallel_divides_gpus": 4,
        "sharding_needs_dp": 4,
        "sp_needs_tp": 4,
    }
    assert space.count_valid(cap=7) == 7
    assert small_space().count_valid(cap=7) == 7  # before the full count is cached
    assert small_space().count_valid(cap=100) == 20
    assert len(list(space.enumerate(limit=5))) == 5
    assert "20 valid configurations out of 32" in space.explain_empty()


def test_enumeration_is_deterministic_and_ordered():
    space = small_space()
    points = list(space.enumerate())
    assert points == list(small_space().enumerate())
    assert list(space.enumerate(limit=6)) == points[:6]
    assert points[0] == TrainingConfig.model_validate(
        {**BASE, **{k: v[0] for k, v in SMALL.items()}}
    )
    order = [tuple(space.knobs[k].index(getattr(p, k)) for k in KNOB_ORDER) for p in points]
    assert order == sorted(order)


# A space wide enough that every rule removes points: MoE with 8 experts, 24 heads / 6 KV heads,
# 12 layers, 24 GPUs, seq 4100 (cp=4 breaks 2*cp chunks), global batch 48, an fp8-only GPU.
WIDE_MODEL = ModelSpec(
    name="wide", num_layers=12, hidden_size=3072, num_attention_heads=24, num_kv_heads=6,
    vocab_size=32000, num_experts=8, experts_per_token=2,
)  # fmt: skip
WIDE: dict[str, list[Any]] = {
    "tp": [1, 2, 3, 4, 12, 16], "pp": [1, 2, 3, 4, 5], "cp": [1, 2, 4], "vpp": [1, 2, 3],
    "ep": [1, 2, 16], "micro_batch_size": [1, 2, 3],
    "sharding": ["none", "zero1", "zero2", "zero3"], "sequence_parallel": [False, True],
    "dtype": ["bf16", "fp4"], "recompute": ["full"],
}  # fmt: skip


def wide_space() -> TrainingSpace:
    return make_space(WIDE_MODEL, gpus=24, seq=4100, gbs=48, space=WIDE)


WIDE_SPACE = wide_space()
WIDE_VALID = set(WIDE_SPACE.enumerate())


def test_wide_space_matches_brute_force():
    space = WIDE_SPACE
    keys = list(space.knobs)
    first_rule: Counter[str] = Counter()
    valid = []
    for values in itertools.product(*space.knobs.values()):
        config = TrainingConfig.model_validate(dict(zip(keys, values, strict=True)))
        found = space.violations(config)
        if found:
            first_rule[names(found)[0]] += 1
        else:
            valid.append(config)
    assert set(valid) == WIDE_VALID and len(valid) == len(WIDE_VALID) > 0
    assert space.count_valid() == len(valid)
    assert space.rejection_counts() == dict(first_rule)
    assert set(first_rule) == {r.name for r in RULES}  # every rule bites somewhere
    assert sum(first_rule.values()) + len(valid) == space.total_points()


WIDE_CONFIGS = st.fixed_dictionaries(
    {k: st.sampled_from(v) for k, v in WIDE_SPACE.knobs.items()}
).map(TrainingConfig.model_validate)


@settings(max_examples=300, deadline=None)
@given(WIDE_CONFIGS)
def test_valid_iff_enumerated(config):
    found = WIDE_SPACE.violations(config)
    assert (found == []) is (config in WIDE_VALID)
    assert WIDE_SPACE.is_valid(config) is (found == [])
    rule_names = {r.name for r in RULES}
    assert all(n in rule_names for n in names(found))


@settings(max_examples=300, deadline=None)
@given(WIDE_CONFIGS, st.sampled_from(RULES), st.data())
def test_rules_read_only_their_declared_knobs(config, rule, data):
    """The enumerator checks a rule as soon as its declared knobs are set: it must not depend
    on any other knob."""
    others = [k for k in KNOB_ORDER if k not in rule.knobs]
    knob = data.draw(st.sampled_from(others))
    value = data.draw(st.sampled_from(WIDE_SPACE.knobs[knob]))
    changed = config.model_copy(update={knob: value})
    ctx = WIDE_SPACE.context
    assert rule.check(ctx, config) == rule.check(ctx, changed)


def test_big_model_default_space_enumerates():
    """126 layers, 128 heads on 1024 GPUs: the default space is walked without a time check."""
    big = ModelSpec(num_layers=126, hidden_size=16384, num_attention_heads=128, vocab_size=128256)
    space = make_space(big, accel=A100, gpus=1024, seq=2048, gbs=1536)
    points = list(space.enumerate())
    assert space.count_valid() == len(points) > 0
    assert sum(space.rejection_counts().values()) + len(points) == space.total_points()
    assert all(space.is_valid(p) for p in points[:: max(1, len(points) // 200)])
    assert all(1024 % (p.tp * p.pp * p.cp) == 0 and p.tp <= 8 for p in points)


def test_large_moe_default_space_counts_without_enumerating():
    """A product of over a million points is counted by multiplying skipped sub-products."""
    moe = ModelSpec(
        num_layers=64, hidden_size=7168, num_attention_heads=128, vocab_size=129280,
        num_experts=256, experts_per_token=8, ffn_activation="swiglu",
    )  # fmt: skip
    space = make_space(moe, accel=B200_NVL72, gpus=4608, seq=32768, gbs=4608)
    assert space.total_points() > 1_000_000
    valid = space.count_valid()
    assert 0 < valid < space.total_points()
    assert sum(space.rejection_counts().values()) + valid == space.total_points()
    assert len(list(space.enumerate(limit=50))) == 50


# -- empty spaces ---------------------------------------------------------------------------------


def test_explain_empty_names_rule_and_fix():
    space = make_space(space={"tp": [3]})
    assert space.count_valid() == 0
    assert list(space.enumerate()) == []
    assert space.rejection_counts() == {"tp_divides_heads": space.total_points()}
    text = space.explain_empty()
    assert "tp_divides_heads" in text
    assert "tp=3 does not divide num_attention_heads=32" in text
    assert "use tp in 1, 2, 4, 8, 16" in text


def test_explain_empty_lists_the_other_rules():
    # pp=3 breaks 32 layers (1/3 of the points); tp=1 with sequence parallelism breaks the rest.
    fixed: dict[str, list[Any]] = {"vpp": [1], "micro_batch_size": [1], "sharding": ["zero1"]}
    space = make_space(space={"tp": [1], "sequence_parallel": [True], "pp": [1, 2, 3], **fixed})
    assert space.count_valid() == 0
    third = space.total_points() // 3
    assert space.rejection_counts() == {"sp_needs_tp": 2 * third, "pp_divides_layers": third}
    text = space.explain_empty()
    assert f"sp_needs_tp removed the most ({2 * third})" in text
    assert text.splitlines()[0].count("sp_needs_tp") == 1
    assert "set sequence_parallel=False" in text
    assert "pp_divides_layers" in text.splitlines()[1]


# -- Optuna ---------------------------------------------------------------------------------------


def test_to_optuna_categorical_json_choices():
    space = make_space(accel=H100)
    dists = space.to_optuna()
    assert set(dists) == {k for k, v in space.knobs.items() if len(v) > 1}
    assert "ep" not in dists and "cp" not in dists  # dense, seq 4096: fixed at 1
    for name, dist in dists.items():
        assert isinstance(dist, optuna.distributions.CategoricalDistribution)
        assert all(type(c) in (int, str, bool) for c in dist.choices), name
        json.dumps(list(dist.choices))
    dtype = dists["dtype"]
    assert isinstance(dtype, optuna.distributions.CategoricalDistribution)
    assert dtype.choices == ("bf16", "fp8")


def test_decode_round_trips_and_sets_fixed_knobs():
    space = make_space(space={"sharding": ["zero2"], "dtype": ["fp8"], "tp": [2, 4]})
    dists = space.to_optuna()
    assert "sharding" not in dists and "dtype" not in dists
    assert space.fixed()["sharding"] == "zero2"
    for config in space.enumerate(limit=300):
        params = space.encode(config)
        assert set(params) == set(dists)
        assert space.decode(params) == config
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask(dists)
        config = space.decode(trial.params)
        assert config.sharding == "zero2" and config.dtype == DType.fp8
        assert all(getattr(config, k) in v for k, v in space.knobs.items())
        assert space.contains(config)
    with pytest.raises(ValueError, match="lack the searched knob"):
        space.decode({"tp": 2})
    with pytest.raises(ValueError, match="unknown training knob"):
        space.decode({**space.encode(config), "bogus": 1})
