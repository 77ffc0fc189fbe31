"""`paretune calibrate`: micro-benchmarks on this machine (two gloo processes for the
collectives), the profile stored in the database, the fitted calibration printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cost_models.profiling.hardware_profile import HardwareProfile
from results.db import make_engine
from results.db import make_session_factory
from results.db import session_scope
from results.hardware_profiles import HardwareProfileRepository
from tuner.cli import app


@pytest.mark.slow
def test_calibrate_stores_a_hardware_profile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cal.db'}"
    args = ["calibrate", "--db", url, "--name", "ci-cpu", "--quick", "--no-steps", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["name"] == "ci-cpu" and "all-reduce busbw" in printed
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        record = HardwareProfileRepository(session).latest("ci-cpu")
    engine.dispose()
    assert record is not None and record.id == printed["id"]
    profile = HardwareProfile.model_validate(record.data)
    assert profile.gemm and profile.attention and profile.memory and not profile.steps
    assert {c.op for c in profile.collectives} == {
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "all_to_all",
    }
    assert all(c.world_size == 2 and c.backend == "gloo" for c in profile.collectives)
    assert record.calibration is not None  # fitted against this CPU's nominal figures
