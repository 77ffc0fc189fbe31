"""Hardware profiles in the database, on each backend: stored immutable, newest by name,
found by device, driver and library versions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from results.db import make_session_factory
from results.db import session_scope
from results.hardware_profiles import HardwareProfileRepository


@pytest.fixture
def profiles(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield make_session_factory(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM hardware_profiles"))


def add(repo: HardwareProfileRepository, name: str, torch_version: str, driver: str = "d1") -> int:
    record = repo.add(
        name=name,
        device="AMD EPYC",
        device_kind="cpu",
        driver_version=driver,
        library_versions={"torch": torch_version, "python": "3.11"},
        host="h",
        data={"gemm": [{"m": 1}]},
        calibration={"constants": {"gemm_efficiency_bf16": 0.5}},
    )
    return record.id


def test_newest_by_name_and_lookup_by_versions(profiles: sessionmaker[Session]) -> None:
    with session_scope(profiles) as session:
        repo = HardwareProfileRepository(session)
        first = add(repo, "lab", "2.12.0")
        second = add(repo, "lab", "2.13.0")
        other = add(repo, "other", "2.13.0", driver="d2")
    with session_scope(profiles) as session:
        repo = HardwareProfileRepository(session)
        latest = repo.latest("lab")
        assert latest is not None and latest.id == second
        assert latest.data == {"gemm": [{"m": 1}]}
        assert latest.calibration == {"constants": {"gemm_efficiency_bf16": 0.5}}
        found = repo.find("AMD EPYC", "d1", {"python": "3.11", "torch": "2.12.0"})
        assert [r.id for r in found] == [first]
        assert [
            r.id for r in repo.find("AMD EPYC", "d2", {"torch": "2.13.0", "python": "3.11"})
        ] == [other]
        assert repo.latest("missing") is None
        assert {r.id for r in repo.list_profiles()} == {first, second, other}


def test_non_json_data_is_refused(profiles: sessionmaker[Session]) -> None:
    with session_scope(profiles) as session, pytest.raises(ValueError, match="hardware profile"):
        HardwareProfileRepository(session).add(
            name="bad",
            device="x",
            device_kind="cpu",
            driver_version="d",
            library_versions={},
            host="h",
            data={"t": float("nan")},
        )
