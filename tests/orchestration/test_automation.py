"""The schedules and the landing sensor start as CIVICMESH_AUTOMATION says: off unless `on`."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from meshcore.settings import Settings
from orchestration.automation import all_products_job, daily_build, new_landing_files
from orchestration.freshness import hourly_freshness
from tests.mesh import isolated_settings


@pytest.mark.parametrize(("value", "running"), [(None, False), ("off", False), ("on", True), ("ON", True)])
def test_automation_starts_as_configured(tmp_path: Path, value: str | None, running: bool) -> None:
    settings = isolated_settings(tmp_path)
    if value is not None:
        settings.extra["automation"] = value
    schedules = [daily_build(settings), hourly_freshness(all_products_job, settings)]
    sensor = new_landing_files(settings)
    expected = "RUNNING" if running else "STOPPED"
    assert [s.default_status.value for s in schedules] == [expected, expected]
    assert sensor.default_status.value == expected


def test_an_unknown_automation_value_is_refused(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    settings.extra["automation"] = "sometimes"
    with pytest.raises(ValueError, match="CIVICMESH_AUTOMATION must be 'on' or 'off'"):
        daily_build(settings)


def test_the_sensor_watches_the_configured_home(tmp_path: Path) -> None:
    settings = isolated_settings(tmp_path)
    (settings.landing_dir / "hr").mkdir(parents=True)
    (settings.landing_dir / "hr" / "employees.parquet").write_bytes(b"PAR1")
    result = new_landing_files(settings)(dg.build_sensor_context())
    assert (
        isinstance(result, dg.SensorResult)
        and result.run_requests[0].tags["changed"] == "hr/employees.parquet"
    )


def _evaluate(settings: Settings, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    return new_landing_files(settings)(dg.build_sensor_context(cursor=cursor))


def test_every_new_landing_state_gets_a_run_key_dagster_has_not_seen(tmp_path: Path) -> None:
    """Dagster skips a run request whose key it has seen: a changed file with an older mtime than
    the newest (delivered with its time kept) and a removed file each need a new key."""
    settings = isolated_settings(tmp_path)
    files = {}
    for department, mtime in (("hr", 1_000_000), ("finance", 2_000_000), ("environment", 1_500_000)):
        files[department] = settings.landing_dir / department / "data.parquet"
        files[department].parent.mkdir(parents=True)
        files[department].write_bytes(b"PAR1")
        os.utime(files[department], (mtime, mtime))
    first = _evaluate(settings, None)
    assert isinstance(first, dg.SensorResult) and first.cursor
    assert isinstance(_evaluate(settings, first.cursor), dg.SkipReason)  # nothing new

    files["hr"].write_bytes(b"PAR1 new rows")
    os.utime(files["hr"], (1_000_001, 1_000_001))  # replaced, its delivery time kept: still not the newest
    second = _evaluate(settings, first.cursor)
    assert isinstance(second, dg.SensorResult) and second.run_requests[0].tags["changed"] == "hr/data.parquet"

    files["environment"].unlink()
    third = _evaluate(settings, second.cursor)
    assert (
        isinstance(third, dg.SensorResult)
        and third.run_requests[0].tags["changed"] == "environment/data.parquet"
    )

    keys = [result.run_requests[0].run_key for result in (first, second, third)]
    assert len(set(keys)) == 3, keys
