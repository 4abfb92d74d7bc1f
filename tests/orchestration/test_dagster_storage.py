"""The pooled event log (dagster.yaml) stays what the Dagster UI reads, live, and dagster-dbt
runs without its start-up probes (they cost seconds per build)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster_dbt import DbtCliResource

from orchestration.build import DAGSTER_YAML, sigterm_kept
from orchestration.dagster_storage import PooledSqliteEventLogStorage
from orchestration.project import MeshDbtCliResource, configure_dbt_environment
from tests.mesh import isolated_settings


def _log_entry(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None,
        level="INFO",
        user_message=message,
        run_id=run_id,
        timestamp=time.time(),
        step_key=None,
        job_name="build_all_products",
        dagster_event=None,
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_stock_storage_sees_each_event_as_it_is_written(tmp_path: Path) -> None:
    """`dagster dev` follows a running run by watching its database file: every write must reach it."""
    writer = PooledSqliteEventLogStorage(str(tmp_path))
    reader = SqliteEventLogStorage(str(tmp_path))  # what a webserver with stock settings runs
    run_id = str(uuid.uuid4())
    seen: list[str] = []
    reader.watch(run_id, None, lambda entry, _cursor: seen.append(entry.user_message))
    try:
        for i in range(3):
            writer.store_event(_log_entry(run_id, f"event {i}"))
            assert _wait_for(lambda i=i: len(seen) == i + 1), f"the watcher missed event {i}: {seen}"
    finally:
        reader.dispose()
        writer.dispose()
    assert seen == ["event 0", "event 1", "event 2"]
    stored = SqliteEventLogStorage(str(tmp_path)).get_records_for_run(run_id).records
    assert [r.event_log_entry.user_message for r in stored] == seen


def test_repository_dagster_yaml_uses_it_and_runs_stay_queryable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copyfile(DAGSTER_YAML, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert Path(storage._base_dir) == tmp_path / "history" / "runs"
        with sigterm_kept():  # as builds run: this test process may start servers afterwards
            result = dg.materialize([probe], instance=instance)
        assert result.success
    # A fresh instance (another process, e.g. the webserver) reads the run and the materialization.
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(result.run_id) is not None
        event = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert event is not None and event.run_id == result.run_id


def test_dbt_resource_skips_the_version_probe_and_the_in_process_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Overriding private members: fail loudly if a dagster-dbt upgrade renames them (the build
    # would silently be seconds slower again).
    assert "_cli_version" in vars(DbtCliResource)
    assert "_initialize_dbt_core_adapter" in vars(DbtCliResource)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))  # restored after the test
    for name in ("CIVICMESH_WAREHOUSE", "DBT_LOG_PATH"):
        monkeypatch.delenv(name, raising=False)
    configure_dbt_environment(isolated_settings(tmp_path))
    resource = MeshDbtCliResource(project_dir=str(Path(DAGSTER_YAML).parent / "transforms"))
    # The version is read from this environment because the dbt it runs is this environment's.
    assert Path(shutil.which("dbt") or "").parent == Path(sys.executable).parent
    assert str(resource._cli_version) == importlib.metadata.version("dbt-core")
    assert resource._initialize_dbt_core_adapter(["build"]) is None
