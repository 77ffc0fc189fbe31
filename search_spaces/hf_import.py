"""Import an architecture from a Hugging Face ``config.json`` into :class:`ModelSpec`.

Users rarely know every architecture field by heart but always have the checkpoint's
``config.json``; this turns it into the same :class:`ModelSpec` the catalog holds, so a job can
say ``model: {hf_config: ...}``. The config arrives already parsed: this module never reads files
(except :func:`load_hf_config_file`, which the CLI calls for a local path) and never touches the
network, so the REST API cannot be made to read server files.

Families handled by ``model_type`` (each family's own key names and defaults):

- dense, Llama-like: ``llama``, ``mistral``, ``qwen2``, ``qwen3``, ``gemma*``, ``phi3``,
  ``olmo*``, ``granite``, ``gpt_neox`` (and, as a fallback, any config with the standard keys);
- MoE: ``mixtral``, ``qwen2_moe``, ``qwen3_moe``, ``deepseek_v2``/``deepseek_v3`` (MLA),
  ``llama4`` (nested ``text_config``), ``gpt_oss``, ``minimax_m2``/``minimax``;
- GPT-2/MPT-style names: ``gpt2`` (``n_layer``, ``n_embd``, ``n_head``) and ``mpt``
  (``n_layers``, ``d_model``, ``n_heads``, ``expansion_ratio``).

What is deliberately not modelled (each under 0.1% of the parameters of the models we know):
biases of MLPs and routers, q/k norms, attention sinks, learned position embeddings. DeepSeek's
multi-token-prediction layers (``num_nextn_predict_layers``) are left out too: they are an
add-on for training and speculative decoding, not part of the 671B main model the paper quotes.

A missing or inconsistent key raises :class:`HFConfigError` (a ``ValueError``) that names the
key and says what to do about it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search_spaces.specs import ModelSpec

__all__ = ["HFConfigError", "load_hf_config_file", "model_from_hf_config", "supported_model_types"]


class HFConfigError(ValueError):
    """A config.json that cannot be turned into a ModelSpec; the message names the key."""


_MISSING = object()

# Activations that mean a gated MLP (three matrices: gate, up, down).
_GATED_ACTS = frozenset({"silu", "swish", "swiglu", "geglu", "gelu_pytorch_tanh"})

# Dense families that read the standard (Llama) key names; value: tie_word_embeddings default
# of the family's transformers config class, used only when the key is absent.
_LLAMA_LIKE: dict[str, bool] = {
    "llama": False,
    "mistral": False,
    "qwen2": False,
    "qwen3": False,
    "phi3": False,
    "olmo": False,
    "olmo2": False,
    "granite": False,
    "gemma": True,
    "gemma2": True,
    "gemma3_text": True,
    "gpt_neox": False,
}
# Families whose MLP is gated whatever `hidden_act` says (Gemma: gelu-tanh gate).
_ALWAYS_GATED = frozenset({"gemma", "gemma2", "gemma3_text"})
# Families whose MLP is never gated (GPT-NeoX: dense_h_to_4h -> gelu -> dense_4h_to_h).
_NEVER_GATED = frozenset({"gpt_neox", "gpt2", "mpt"})


def supported_model_types() -> list[str]:
    """The ``model_type`` values with a dedicated mapping (others try the standard keys)."""
    moe = ["mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "llama4"]
    moe += ["llama4_text", "gpt_oss", "minimax_m2", "minimax", "gpt2", "mpt"]
    return sorted([*_LLAMA_LIKE, *moe])


# -- reading keys ---------------------------------------------------------------------------------


class _Cfg:
    """A config mapping with typed getters whose errors name the key (and its nesting)."""

    def __init__(self, data: Mapping[str, Any], where: str = "") -> None:
        self.data = data
        self.where = where

    def _key(self, key: str) -> str:
        return f"{self.where}{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def int_(self, *keys: str, default: Any = _MISSING, minimum: int = 1) -> int:
        """The first of ``keys`` present, as an int >= ``minimum``."""
        for key in keys:
            value = self.data.get(key)
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise HFConfigError(
                    f"config key '{self._key(key)}' must be a whole number, got {value!r}; "
                    "fix config.json or give the architecture inline"
                )
            if value < minimum:
                raise HFConfigError(
                    f"config key '{self._key(key)}' must be at least {minimum}, got {value}"
                )
            return value
        if default is not _MISSING:
            return int(default)
        names = " or ".join(f"'{self._key(k)}'" for k in keys)
        raise HFConfigError(
            f"config.json has no {names}; add it (see the model's config on the Hugging Face Hub) "
            "or describe the model inline with num_layers, hidden_size, ... (DESIGN.md)"
        )

    def opt_int(self, *keys: str, minimum: int = 1) -> int | None:
        return self.int_(*keys, default=None, minimum=minimum) if self._any(keys) else None

    def _any(self, keys: tuple[str, ...]) -> bool:
        return any(self.has(k) for k in keys)

    def bool_(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise HFConfigError(
                f"config key '{self._key(key)}' must be true or false, got {value!r}"
            )
        return value

    def str_(self, *keys: str, default: str = "") -> str:
        for key in keys:
            value = self.data.get(key)
            if value is not None:
                return str(value)
        return default

    def sub(self, key: str) -> _Cfg:
        value = self.data.get(key)
        if value is None:
            return _Cfg({}, f"{self._key(key)}.")
        if not isinstance(value, Mapping):
            raise HFConfigError(f"config key '{self._key(key)}' must be an object, got {value!r}")
        return _Cfg(value, f"{self._key(key)}.")


# -- common pieces --------------------------------------------------------------------------------


def _attention_fields(c: _Cfg, hidden: int) -> dict[str, Any]:
    """Heads, KV heads and head size, checked against each other."""
    heads = c.int_("num_attention_heads", "n_head", "n_heads", "num_heads")
    kv = c.int_("num_key_value_heads", "num_kv_heads", "n_head_kv", default=heads)
    if heads % kv:
        raise HFConfigError(
            f"config key '{c._key('num_key_value_heads')}' ({kv}) must divide "
            f"'{c._key('num_attention_heads')}' ({heads}); fix config.json"
        )
    head_dim = c.opt_int("head_dim")
    if head_dim is None:
        if hidden % heads:
            raise HFConfigError(
                f"config.json has no '{c._key('head_dim')}' and hidden_size ({hidden}) is not a "
                f"multiple of num_attention_heads ({heads}); add head_dim to config.json"
            )
        head_dim = hidden // heads
    return {"num_attention_heads": heads, "num_kv_heads": kv, "head_dim": head_dim}


def _gated(c: _Cfg, model_type: str) -> bool:
    if model_type in _ALWAYS_GATED:
        return True
    if model_type in _NEVER_GATED:
        return False
    act = c.str_("hidden_act", "hidden_activation", "activation_function", default="silu")
    return act.lower() in _GATED_ACTS


def _check_layer_types(c: _Cfg, num_layers: int) -> None:
    """Catch a hand-edited config whose per-layer list disagrees with the layer count."""
    layer_types = c.data.get("layer_types")
    if isinstance(layer_types, list) and len(layer_types) != num_layers:
        raise HFConfigError(
            f"config key '{c._key('layer_types')}' lists {len(layer_types)} layers but "
            f"'{c._key('num_hidden_layers')}' is {num_layers}; make them agree"
        )


def _experts(c: _Cfg, experts_key: tuple[str, ...]) -> tuple[int, int]:
    """(routed experts, experts per token), with the two top-k spellings reconciled."""
    num = c.int_(*experts_key)
    top_k_keys = [k for k in ("num_experts_per_tok", "experts_per_token") if c.has(k)]
    values = {k: c.int_(k) for k in top_k_keys}
    if len(set(values.values())) > 1:
        raise HFConfigError(
            "config keys 'num_experts_per_tok' and 'experts_per_token' disagree "
            f"({values}); keep one value"
        )
    if not values:
        raise HFConfigError(
            f"config.json has {num} experts but no 'num_experts_per_tok'; add the router top-k"
        )
    top_k = next(iter(values.values()))
    if top_k > num:
        raise HFConfigError(
            f"config key '{c._key(top_k_keys[0])}' ({top_k}) exceeds the number of experts "
            f"({num}); fix config.json"
        )
    return num, top_k


def _shared_experts(c: _Cfg, key: str, moe_ffn: int) -> int:
    """Shared-expert MLP width expressed as a count of routed-size experts."""
    width = c.int_(key, default=0, minimum=0)
    if width % moe_ffn:
        raise HFConfigError(
            f"config key '{c._key(key)}' ({width}) is not a multiple of the expert size "
            f"({moe_ffn}); ModelSpec counts shared experts in routed-expert units"
        )
    return width // moe_ffn


# -- families ------------------------------------------------------------------------------------


def _dense(c: _Cfg, model_type: str) -> dict[str, Any]:
    """Llama-like dense decoders (and the fallback for unknown types with standard keys)."""
    layers = c.int_("num_hidden_layers", "n_layer", "n_layers", "num_layers")
    hidden = c.int_("hidden_size", "n_embd", "d_model")
    _check_layer_types(c, layers)
    gated = _gated(c, model_type)
    ffn = c.int_("intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden)
    biased = model_type in ("gpt_neox", "qwen2") or c.bool_("attention_bias", False)
    return {
        "num_layers": layers,
        "hidden_size": hidden,
        **_attention_fields(c, hidden),
        "ffn_hidden_size": ffn,
        "ffn_activation": "swiglu" if gated else "gelu",
        "vocab_size": c.int_("vocab_size", "padded_vocab_size"),
        "tie_word_embeddings": c.bool_("tie_word_embeddings", _LLAMA_LIKE.get(model_type, False)),
        "attention_bias": biased,
    }


def _mixtral(c: _Cfg) -> dict[str, Any]:
    fields = _dense(c, "mixtral")
    num, top_k = _experts(c, ("num_local_experts",))
    ffn = fields["ffn_hidden_size"]
    return {**fields, "num_experts": num, "experts_per_token": top_k, "moe_ffn_hidden_size": ffn}


def _qwen_moe(c: _Cfg, model_type: str) -> dict[str, Any]:
    """Qwen2/Qwen3-MoE: sparse every `decoder_sparse_step` layers except `mlp_only_layers`."""
    fields = _dense(c, model_type)
    num, top_k = _experts(c, ("num_experts",))
    moe_ffn = c.int_("moe_intermediate_size")
    layers = fields["num_layers"]
    step = c.int_("decoder_sparse_step", default=1)
    raw_dense = c.data.get("mlp_only_layers") or []
    if not isinstance(raw_dense, list) or not all(
        isinstance(i, int) and 0 <= i < layers for i in raw_dense
    ):
        raise HFConfigError(
            f"config key '{c._key('mlp_only_layers')}' must list layer indices below {layers}"
        )
    dense_only = set(raw_dense)
    moe_count = sum(1 for i in range(layers) if i not in dense_only and (i + 1) % step == 0)
    # ModelSpec places dense layers first, then one MoE layer every `step`; the position does
    # not change parameter counts, only the count must match.
    num_dense = len(dense_only) if step == 1 else 0
    if (layers - num_dense) // step != moe_count:
        raise HFConfigError(
            f"config keys 'decoder_sparse_step' ({step}) and 'mlp_only_layers' "
            f"({sorted(dense_only)}) give {moe_count} MoE layers, a pattern ModelSpec cannot "
            "express; describe the model inline with num_dense_layers and moe_layer_interval"
        )
    shared = _shared_experts(c, "shared_expert_intermediate_size", moe_ffn)
    return {
        **fields,
        "num_experts": num,
        "experts_per_token": top_k,
        "moe_ffn_hidden_size": moe_ffn,
        "num_shared_experts": shared,
        "num_dense_layers": num_dense,
        "moe_layer_interval": step,
    }


def _deepseek(c: _Cfg, model_type: str) -> dict[str, Any]:
    """DeepSeek-V2/V3: MLA attention, `first_k_dense_replace` dense layers, shared experts."""
    layers = c.int_("num_hidden_layers")
    hidden = c.int_("hidden_size")
    heads = c.int_("num_attention_heads")
    num, top_k = _experts(c, ("n_routed_experts",))
    moe_ffn = c.int_("moe_intermediate_size")
    first_dense = c.int_("first_k_dense_replace", default=0, minimum=0)
    freq = c.int_("moe_layer_freq", default=1)
    if first_dense >= layers:
        raise HFConfigError(
            f"config key 'first_k_dense_replace' ({first_dense}) must be below "
            f"num_hidden_layers ({layers})"
        )
    moe_count = sum(1 for i in range(first_dense, layers) if i % freq == 0)
    if (layers - first_dense) // freq != moe_count:
        raise HFConfigError(
            f"config keys 'moe_layer_freq' ({freq}) and 'first_k_dense_replace' ({first_dense}) "
            f"give {moe_count} MoE layers, a pattern ModelSpec cannot express; describe the "
            "model inline with num_dense_layers and moe_layer_interval"
        )
    rope = c.int_("qk_rope_head_dim")
    nope = c.int_("qk_nope_head_dim")
    return {
        "num_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        # MLA has no KV heads of its own: the latent is expanded per head (KV heads = heads).
        "num_kv_heads": heads,
        "head_dim": nope + rope,
        "ffn_hidden_size": c.int_("intermediate_size"),
        "ffn_activation": "swiglu" if _gated(c, model_type) else "gelu",
        "vocab_size": c.int_("vocab_size"),
        "tie_word_embeddings": c.bool_("tie_word_embeddings", False),
        "num_experts": num,
        "experts_per_token": top_k,
        "moe_ffn_hidden_size": moe_ffn,
        "num_shared_experts": c.int_("n_shared_experts", default=0, minimum=0),
        "num_dense_layers": first_dense,
        "moe_layer_interval": freq,
        "attention": "mla",
        # DeepSeek-V2-Lite has q_lora_rank null: queries are projected directly.
        "q_lora_rank": c.opt_int("q_lora_rank"),
        "kv_lora_rank": c.int_("kv_lora_rank"),
        "qk_nope_head_dim": nope,
        "qk_rope_head_dim": rope,
        "v_head_dim": c.int_("v_head_dim"),
    }


def _llama4(c: _Cfg) -> dict[str, Any]:
    """Llama 4 text model: MoE every `interleave_moe_layer_step` layers, one shared expert.

    ``intermediate_size`` is the expert (and shared-expert) width, ``intermediate_size_mlp``
    the width of the dense layers in between.
    """
    layers = c.int_("num_hidden_layers")
    hidden = c.int_("hidden_size")
    num, top_k = _experts(c, ("num_local_experts",))
    step = c.int_("interleave_moe_layer_step", default=1)
    moe_layers = c.data.get("moe_layers")
    expected = list(range(step - 1, layers, step))
    if moe_layers is not None and list(moe_layers) != expected:
        raise HFConfigError(
            f"config key '{c._key('moe_layers')}' does not match interleave_moe_layer_step "
            f"({step}): expected every {step}-th layer; describe the model inline"
        )
    moe_ffn = c.int_("intermediate_size")
    dense_ffn = c.int_("intermediate_size_mlp", default=moe_ffn) if step > 1 else moe_ffn
    return {
        "num_layers": layers,
        "hidden_size": hidden,
        **_attention_fields(c, hidden),
        "ffn_hidden_size": dense_ffn,
        "ffn_activation": "swiglu",
        "vocab_size": c.int_("vocab_size"),
        "tie_word_embeddings": c.bool_("tie_word_embeddings", False),
        "attention_bias": c.bool_("attention_bias", False),
        "num_experts": num,
        "experts_per_token": top_k,
        "moe_ffn_hidden_size": moe_ffn,
        "num_shared_experts": 1,
        "moe_layer_interval": step,
    }


def _gpt_oss(c: _Cfg) -> dict[str, Any]:
    """gpt-oss: all layers MoE, biased attention (sinks not counted), intermediate_size = expert."""
    fields = _dense(c, "gpt_oss")
    num, top_k = _experts(c, ("num_local_experts",))
    return {
        **fields,
        "ffn_activation": "swiglu",
        "attention_bias": c.bool_("attention_bias", True),
        "num_experts": num,
        "experts_per_token": top_k,
        "moe_ffn_hidden_size": fields["ffn_hidden_size"],
        **_sliding_window(c),
    }


def _sliding_window(c: _Cfg) -> dict[str, Any]:
    """Layers marked ``sliding_attention`` in ``layer_types`` attend to ``sliding_window``
    tokens only (gpt-oss alternates them with full attention)."""
    kinds = c.data.get("layer_types") or []
    layers = sum(1 for k in kinds if k == "sliding_attention")
    if not layers or not c.has("sliding_window"):
        return {}
    return {"sliding_window": c.int_("sliding_window"), "sliding_window_layers": layers}


def _minimax(c: _Cfg, model_type: str) -> dict[str, Any]:
    """MiniMax-M2.x (and MiniMax-Text-01's key names): every layer MoE.

    MiniMax-Text-01 mixes lightning (linear) attention layers into the stack; they are counted
    as softmax attention of the same shape, which is close in weights but not in FLOPs.
    MTP modules (`num_mtp_modules`) are left out like DeepSeek's.
    """
    fields = _dense(c, model_type)
    num, top_k = _experts(c, ("num_local_experts",))
    moe_ffn = fields["ffn_hidden_size"]
    return {
        **fields,
        "ffn_activation": "swiglu",
        "num_experts": num,
        "experts_per_token": top_k,
        "moe_ffn_hidden_size": moe_ffn,
        "num_shared_experts": _shared_experts(c, "shared_intermediate_size", moe_ffn),
    }


def _gpt2(c: _Cfg) -> dict[str, Any]:
    """GPT-2 names: tied embeddings, biases everywhere, GELU MLP of `n_inner` (default 4h)."""
    layers = c.int_("n_layer", "num_hidden_layers")
    hidden = c.int_("n_embd", "hidden_size")
    return {
        "num_layers": layers,
        "hidden_size": hidden,
        **_attention_fields(c, hidden),
        "ffn_hidden_size": c.int_("n_inner", default=4 * hidden),
        "ffn_activation": "gelu",
        "vocab_size": c.int_("vocab_size"),
        "tie_word_embeddings": c.bool_("tie_word_embeddings", True),
        "attention_bias": True,
    }


def _mpt(c: _Cfg) -> dict[str, Any]:
    """MosaicML MPT: ALiBi (no position weights), tied embeddings, no_bias, GQA via attn_config."""
    layers = c.int_("n_layers", "num_hidden_layers")
    hidden = c.int_("d_model", "hidden_size")
    heads = c.int_("n_heads", "num_attention_heads")
    attn = c.sub("attn_config")
    kind = attn.str_("attn_type", default="multihead_attention")
    if kind == "multiquery_attention":
        kv = 1
    elif kind == "grouped_query_attention":
        kv = attn.int_("kv_n_heads")
    else:
        kv = heads
    if heads % kv:
        raise HFConfigError(
            f"config key 'attn_config.kv_n_heads' ({kv}) must divide n_heads ({heads})"
        )
    if hidden % heads:
        raise HFConfigError(
            f"config key 'd_model' ({hidden}) must be a multiple of n_heads ({heads})"
        )
    ffn_cfg = c.sub("ffn_config")
    gated = ffn_cfg.str_("ffn_type", default="mptmlp") == "mptglu"
    expansion = c.data.get("expansion_ratio", 4)
    if not isinstance(expansion, int | float) or isinstance(expansion, bool) or expansion <= 0:
        raise HFConfigError(
            f"config key 'expansion_ratio' must be a positive number, got {expansion!r}"
        )
    ffn = ffn_cfg.int_("ffn_hidden_size", default=int(expansion * hidden))
    return {
        "num_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": kv,
        "head_dim": hidden // heads,
        "ffn_hidden_size": ffn,
        "ffn_activation": "swiglu" if gated else "gelu",
        "vocab_size": c.int_("vocab_size"),
        "tie_word_embeddings": c.bool_("tie_word_embeddings", True),
        "attention_bias": not c.bool_("no_bias", True),
    }


# -- entry points --------------------------------------------------------------------------------


def _text_config(cfg: Mapping[str, Any]) -> tuple[_Cfg, str]:
    """The language-model part of a (possibly multimodal) config, and its model_type."""
    top_type = str(cfg.get("model_type") or "").lower()
    text = cfg.get("text_config")
    layer_keys = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")
    if isinstance(text, Mapping) and not any(cfg.get(k) is not None for k in layer_keys):
        inner_type = str(text.get("model_type") or top_type).lower()
        return _Cfg(text, "text_config."), inner_type
    return _Cfg(cfg), top_type


def _default_name(cfg: Mapping[str, Any], model_type: str) -> str:
    raw = str(cfg.get("_name_or_path") or "").strip()
    if raw.startswith(("/", "~", ".")) or "\\" in raw:
        raw = Path(raw).name  # a local directory: keep its last component
    return raw or model_type or "hf-model"


def model_from_hf_config(cfg: dict[str, Any], name: str | None = None) -> ModelSpec:
    """Map a parsed Hugging Face ``config.json`` to a :class:`ModelSpec`.

    ``name`` defaults to ``_name_or_path`` (its last component when it is a local path) or the
    ``model_type``. Raises :class:`HFConfigError` (a ``ValueError``) naming the offending key.
    """
    if not isinstance(cfg, Mapping):
        raise HFConfigError(
            f"hf_config must be the config.json object (a mapping), got {type(cfg).__name__}"
        )
    c, model_type = _text_config(cfg)
    top_type = str(cfg.get("model_type") or model_type)
    if model_type in ("mixtral",):
        fields = _mixtral(c)
    elif model_type in ("qwen2_moe", "qwen3_moe"):
        fields = _qwen_moe(c, model_type)
    elif model_type in ("deepseek_v2", "deepseek_v3"):
        fields = _deepseek(c, model_type)
    elif model_type in ("llama4", "llama4_text"):
        fields = _llama4(c)
    elif model_type == "gpt_oss":
        fields = _gpt_oss(c)
    elif model_type in ("minimax_m2", "minimax", "minimax_text_01"):
        fields = _minimax(c, model_type)
    elif model_type == "gpt2":
        fields = _gpt2(c)
    elif model_type == "mpt":
        fields = _mpt(c)
    elif any(c.has(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")) and (
        model_type not in _LLAMA_LIKE
    ):
        raise HFConfigError(
            f"model_type '{model_type}' is a mixture-of-experts config paretune has no mapping "
            f"for; supported: {', '.join(supported_model_types())}. Describe the model inline "
            "(num_experts, experts_per_token, moe_ffn_hidden_size, ...)"
        )
    else:
        # Llama-like families, and any other decoder that uses the standard key names.
        fields = _dense(c, model_type)
    try:
        return ModelSpec.model_validate({"name": name or _default_name(cfg, top_type), **fields})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'model'}: {e['msg']}" for e in exc.errors()
        )
        raise HFConfigError(
            f"config.json maps to an invalid architecture ({problems}); check the keys above"
        ) from None


def load_hf_config_file(path: str | Path) -> dict[str, Any]:
    """Read a local ``config.json`` (or a checkpoint directory holding one) for the CLI.

    Raises :class:`HFConfigError` with a sentence a person can act on when the file is missing,
    unreadable, not JSON, or not a JSON object.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise HFConfigError(
            f"hf_config file '{p}' does not exist; give the path of the model's config.json "
            "(or of the checkpoint directory that holds it)"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HFConfigError(f"cannot read hf_config file '{p}': {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HFConfigError(
            f"hf_config file '{p}' is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); it should be a Hugging Face config.json"
        ) from None
    if not isinstance(data, dict):
        raise HFConfigError(
            f"hf_config file '{p}' holds a JSON {type(data).__name__}, not an object; "
            "it should be a Hugging Face config.json"
        )
    return data
