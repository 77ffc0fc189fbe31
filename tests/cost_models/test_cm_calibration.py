"""Calibration constants: stored as data, one entry per GPU generation, default fallback."""

from __future__ import annotations

import pydantic
import pytest
import yaml

from cost_models import Calibration
from cost_models import load_calibration
from cost_models.calibration import CALIBRATION_FILE
from cost_models.calibration import calibration_generations
from search_spaces.catalog import all_gpus


def test_default_entry_holds_every_constant():
    with CALIBRATION_FILE.open() as fh:
        data = yaml.safe_load(fh)
    fields = set(Calibration.model_fields) - {"generation"}
    assert set(data["default"]) == fields
    for name, entry in data.items():
        assert set(entry or {}) <= fields, f"{name} has unknown constants"


def test_generation_entries_override_the_default():
    with CALIBRATION_FILE.open() as fh:
        data = yaml.safe_load(fh)
    default = data["default"]
    for generation in calibration_generations():
        cal = load_calibration(generation.upper())  # case-insensitive
        assert cal.generation == generation
        entry = data[generation] or {}
        for name in default:
            assert getattr(cal, name) == entry.get(name, default[name]), (generation, name)


def test_unknown_generation_falls_back_to_default():
    cal = load_calibration("some-future-gpu")
    assert cal.generation == "default"
    assert cal.model_dump(exclude={"generation"}) == load_calibration("default").model_dump(
        exclude={"generation"}
    )


def test_every_catalog_gpu_gets_constants():
    for gpu in all_gpus():
        cal = load_calibration(gpu.generation)
        assert 0 < cal.gemm_efficiency_bf16 <= 1


def test_fitted_generations_are_present():
    assert {"ampere", "hopper", "blackwell", "blackwell-ultra"} <= set(calibration_generations())


def test_calibration_is_frozen_and_validated():
    cal = load_calibration("ampere")
    with pytest.raises(pydantic.ValidationError):
        cal.gemm_efficiency_bf16 = 0.9  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Calibration(**{**cal.model_dump(), "gemm_efficiency_bf16": 1.5})
