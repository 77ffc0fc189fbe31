"""Stored hardware profiles: the micro-benchmarks of a device and the calibration fitted to them.

A profile is immutable once stored. Several may share a name (re-running `paretune calibrate
--name lab-a100` after a driver upgrade): by name, the newest counts, and older ones stay for
the jobs that used them. ``find`` looks profiles up by what their figures depend on: the
device, its driver and the library versions. Like ``JobRepository``, this only flushes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic import ConfigDict
from sqlalchemy import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from results import _queries as q
from results.orm import HardwareProfileRow

profiles: Table = HardwareProfileRow.__table__  # type: ignore[assignment]


class HardwareProfileRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    device: str
    device_kind: str
    driver_version: str
    library_versions: dict[str, str]
    host: str
    data: dict[str, Any]
    calibration: dict[str, Any] | None = None
    created_at: datetime


def library_key(versions: dict[str, str]) -> str:
    """A stable text form of the library versions, for equality lookups in SQL."""
    return ";".join(f"{k}={versions[k]}" for k in sorted(versions))


class HardwareProfileRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        *,
        name: str,
        device: str,
        device_kind: str,
        driver_version: str,
        library_versions: dict[str, str],
        host: str,
        data: dict[str, Any],
        calibration: dict[str, Any] | None = None,
    ) -> HardwareProfileRecord:
        q.check_json("the hardware profile", data)
        if calibration is not None:
            q.check_json("the calibration", calibration)
        row = HardwareProfileRow(
            name=name,
            device=device,
            device_kind=device_kind,
            driver_version=driver_version,
            library_versions=library_versions,
            library_key=library_key(library_versions),
            host=host,
            data=data,
            calibration=calibration,
        )
        self.session.add(row)
        self.session.flush()
        found = self.get(row.id)
        assert found is not None
        return found

    def get(self, profile_id: int) -> HardwareProfileRecord | None:
        row = self.session.execute(select(profiles).where(profiles.c.id == profile_id)).first()
        return None if row is None else _record(row)

    def latest(self, name: str) -> HardwareProfileRecord | None:
        """The newest profile stored under ``name``."""
        query = (
            select(profiles)
            .where(profiles.c.name == name)
            .order_by(profiles.c.created_at.desc(), profiles.c.id.desc())
            .limit(1)
        )
        row = self.session.execute(query).first()
        return None if row is None else _record(row)

    def find(
        self, device: str, driver_version: str, library_versions: dict[str, str]
    ) -> list[HardwareProfileRecord]:
        """Profiles of exactly this device, driver and library versions, newest first."""
        query = (
            select(profiles)
            .where(
                profiles.c.device == device,
                profiles.c.driver_version == driver_version,
                profiles.c.library_key == library_key(library_versions),
            )
            .order_by(profiles.c.created_at.desc(), profiles.c.id.desc())
        )
        return [_record(r) for r in self.session.execute(query)]

    def list_profiles(self, limit: int = 50) -> list[HardwareProfileRecord]:
        query = (
            select(profiles)
            .order_by(profiles.c.created_at.desc(), profiles.c.id.desc())
            .limit(limit)
        )
        return [_record(r) for r in self.session.execute(query)]


def _record(row: Any) -> HardwareProfileRecord:
    values = row._asdict()
    values.pop("library_key", None)
    return HardwareProfileRecord.model_validate(values)
