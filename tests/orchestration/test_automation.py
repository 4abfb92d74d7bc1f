"""The schedules and the landing sensor start as CIVICMESH_AUTOMATION says: off unless `on`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

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
