"""Launch files for a recommended (or any front) training configuration.

Each exporter takes the validated spec and one configuration and returns the text of a file a
user can run or paste, with flag and key names as the target framework spells them today (each
``tuner/exporters_<framework>.py`` names the source and version it was matched against). What a
framework cannot express is written into the file as a note, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml

from search_spaces.config import TrainingConfig
from search_spaces.job_spec import TrainingJobSpec
from tuner.exporters_common import plain
from tuner.exporters_deepspeed import export_deepspeed
from tuner.exporters_megatron import export_megatron
from tuner.exporters_megatron import megatron_args
from tuner.exporters_nemo import export_nemo
from tuner.exporters_torchtitan import export_torchtitan
from tuner.kinds import AnyJobSpec
from tuner.kinds import kind_of

Exporter = Callable[[TrainingJobSpec, TrainingConfig, dict[str, float]], str]

__all__ = [
    "TRAINING_EXPORTERS",
    "Exporter",
    "export",
    "export_deepspeed",
    "export_json",
    "export_megatron",
    "export_nemo",
    "export_torchtitan",
    "export_yaml",
    "megatron_args",
]


def export_json(spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]) -> str:
    """paretune's own record of the point: knobs, derived sizes and the prediction."""
    return json.dumps(plain(spec, config, metrics), indent=2) + "\n"


def export_yaml(spec: TrainingJobSpec, config: TrainingConfig, metrics: dict[str, float]) -> str:
    """The same record as YAML, for specs and notes kept in YAML."""
    return yaml.safe_dump(plain(spec, config, metrics), sort_keys=False)


TRAINING_EXPORTERS: dict[str, tuple[str, Exporter]] = {
    "json": ("recommendation.json", export_json),
    "yaml": ("recommendation.yaml", export_yaml),
    "megatron": ("launch_megatron.sh", export_megatron),
    "deepspeed": ("ds_config.json", export_deepspeed),
    "torchtitan": ("torchtitan.toml", export_torchtitan),
    "nemo": ("nemo_override.yaml", export_nemo),
}


def export(fmt: str, spec: AnyJobSpec, config: dict[str, Any], metrics: dict[str, float]) -> str:
    """Render ``config`` of ``spec`` in format ``fmt``; ValueError names the known formats."""
    kind = kind_of(spec)
    if fmt not in kind.exporters:
        known = ", ".join(kind.exporters)
        raise ValueError(f"unknown format '{fmt}' for {kind.name} jobs; use one of: {known}")
    return kind.exporters[fmt][1](spec, kind.parse_config(config), metrics)
