"""Property tests of job-spec validation: whatever a client sends, ``parse_job_spec`` either
returns a spec or raises pydantic's ValidationError (which the API turns into a 422 naming
the field), never anything else; and every spec it accepts survives a trip through JSON (the
server stores specs as JSON and runs jobs from the stored copy) unchanged."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pydantic import ValidationError

from search_spaces.catalog import all_gpus
from search_spaces.catalog import all_models
from search_spaces.job_spec import parse_job_spec
from search_spaces.objectives import INFERENCE_METRICS
from search_spaces.objectives import TRAINING_METRICS

HF_LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
}
INLINE = {
    "name": "tiny",
    "num_layers": 8,
    "hidden_size": 1024,
    "num_attention_heads": 16,
    "num_kv_heads": 4,
    "ffn_hidden_size": 4096,
    "ffn_activation": "swiglu",
    "vocab_size": 32000,
}
BASES: list[dict[str, Any]] = [
    {
        "model": "llama-3.1-8b",
        "cluster": {"gpu": "h100-sxm-80gb", "num_gpus": 16},
        "workload": {"seq_len": 4096, "global_batch_size": 256},
        "space": {"tp": [1, 2, 4], "pp": [1, 2], "recompute": ["none", "full"]},
        "objectives": ["max:tokens_per_s_per_gpu", "min:memory_per_gpu_gib"],
        "limits": {"max_memory_per_gpu_gib": 70},
        "budget": {"trials": 50, "batch_size": 8},
        "sampler": {"name": "tpe", "seed": 1},
    },
    {
        "kind": "inference",
        "model": INLINE,
        "cluster": {"gpu": "h200-141gb", "num_gpus": 8},
        "workload": {"input_len": 4000, "output_len": 500, "ttft_ms": 1000},
        "space": {"tp": [1, 2, 4], "weight_dtype": ["bf16", "fp8"]},
        "objectives": ["min:cost_per_million_tokens_usd", "max:tokens_per_s_per_user"],
    },
    {
        "model": {"hf_config": HF_LLAMA},
        "cluster": {"gpu": "a100-80gb", "num_gpus": 8, "gpus_per_node": 8},
        "workload": {"seq_len": 2048, "global_batch_size": 64},
        "config": {"tp": 2, "pp": 2, "sharding": "zero1"},
        "evaluator": "analytical",
    },
]
PATHS = [
    ("kind",), ("name",), ("model",), ("model", "hidden_size"), ("model", "num_kv_heads"),
    ("model", "num_experts"), ("model", "hf_config"), ("model", "hf_config", "hidden_size"),
    ("model", "hf_config", "num_key_value_heads"), ("model", "hf_config", "model_type"),
    ("cluster",), ("cluster", "gpu"), ("cluster", "num_gpus"), ("cluster", "gpus_per_node"),
    ("workload",), ("workload", "seq_len"), ("workload", "global_batch_size"),
    ("workload", "input_len"), ("workload", "concurrency"), ("space",), ("space", "tp"),
    ("space", "dtype"), ("config",), ("config", "tp"), ("objectives",), ("limits",),
    ("limits", "max_memory_per_gpu_gib"), ("evaluator",), ("evaluator", "type"), ("budget",),
    ("budget", "trials"), ("budget", "exhaustive_limit"), ("sampler",), ("sampler", "name"),
    ("x_unknown",),
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([0, -1, 1, 3, 7, 2**31, "h100-sxm-80gb", "llama-3.1-8b", "max:mfu", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def set_path(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Put ``value`` at ``path``, turning whatever is in the way into objects."""
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        if draw(st.booleans()) and path[0] in doc and len(path) == 1:
            del doc[path[0]]
        else:
            set_path(doc, path, draw(json_values))
    return doc


def check_accepted(spec: Any) -> None:
    """An accepted spec is storable as strict JSON and re-parses to itself."""
    stored = json.loads(json.dumps(spec.model_dump(mode="json"), allow_nan=False))
    assert parse_job_spec(stored) == spec


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_any_document_is_accepted_or_refused_with_a_validation_error(doc: Any) -> None:
    try:
        spec = parse_job_spec(doc)
    except ValidationError:
        return
    check_accepted(spec)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_arbitrary_json_is_refused_cleanly(doc: Any) -> None:
    try:
        spec = parse_job_spec(doc)
    except ValidationError:
        return
    check_accepted(spec)


GPU_IDS = [g.id for g in all_gpus()]
MODEL_IDS = [m.name for m in all_models()]


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["training", "inference"]))
    metrics = sorted(TRAINING_METRICS if kind == "training" else INFERENCE_METRICS)
    chosen = draw(st.lists(st.sampled_from(metrics), min_size=1, max_size=3, unique=True))
    objectives = [f"{draw(st.sampled_from(['max', 'min']))}:{m}" for m in chosen]
    doc: dict[str, Any] = {
        "kind": kind,
        "name": draw(st.text(max_size=30)),
        "model": draw(st.sampled_from(MODEL_IDS)),
        "cluster": {
            "gpu": draw(st.sampled_from(GPU_IDS)),
            "num_gpus": draw(st.sampled_from([1, 2, 8, 16, 64, 512])),
        },
        "objectives": objectives,
        "limits": {f"max_{chosen[0]}": draw(st.floats(min_value=0.1, max_value=1e6))},
        "budget": {"trials": draw(st.integers(min_value=1, max_value=100_000))},
        "sampler": {
            "name": draw(st.sampled_from(["auto", "bo", "tpe", "nsga2", "random", "gp"])),
            "seed": draw(st.integers(min_value=0, max_value=2**31)),
        },
    }
    if kind == "training":
        doc["workload"] = {
            "seq_len": draw(st.sampled_from([512, 2048, 4096, 8192])),
            "global_batch_size": draw(st.sampled_from([8, 64, 256, 1024])),
        }
        doc["space"] = {
            "tp": draw(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, unique=True))
        }
    else:
        doc["workload"] = {
            "input_len": draw(st.integers(min_value=1, max_value=32_000)),
            "output_len": draw(st.integers(min_value=1, max_value=8_000)),
        }
    return doc


@settings(max_examples=150, deadline=None)
@given(valid_specs())
def test_valid_specs_round_trip_through_json(doc: dict[str, Any]) -> None:
    spec = parse_job_spec(doc)
    assert spec.kind == doc["kind"]
    assert [str(o) for o in spec.objectives] == doc["objectives"]
    check_accepted(spec)
