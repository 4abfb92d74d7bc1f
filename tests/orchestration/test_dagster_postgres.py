"""Dagster's instance storage on PostgreSQL (dagster.postgres.yaml, dagster-postgres): runs and
materialisations land in the database, where another process (the UI, another machine) sees them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from orchestration.build import DAGSTER_YAML, sigterm_kept
from tests.pg import PgCluster

pytestmark = pytest.mark.slow

POSTGRES_YAML = DAGSTER_YAML.with_name("dagster.postgres.yaml")


@dg.asset
def counts() -> int:
    return 3


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="doubled")])
def doubled(counts: int) -> dg.Output[int]:
    yield dg.Output(counts * 2)
    yield dg.AssetCheckResult(passed=counts > 0)


def test_materialisations_are_stored_in_postgres_and_seen_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: PgCluster
) -> None:
    url = postgres.create_database().replace("postgresql+psycopg://", "postgresql+psycopg2://")
    shutil.copyfile(POSTGRES_YAML, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("CIVICMESH_DAGSTER_PG_URL", url)
    job = dg.Definitions(assets=[counts, doubled]).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        with sigterm_kept():  # as builds run
            result = job.execute_in_process(instance=instance, tags={"civicmesh/trigger": "cli"})
        assert result.success
    # The rows are in PostgreSQL itself, not in DAGSTER_HOME.
    with psycopg.connect(url.replace("+psycopg2", "")) as conn:
        assert conn.execute("SELECT count(*) FROM runs WHERE run_id = %s", [result.run_id]).fetchone() == (1,)
    assert not list(tmp_path.glob("**/*.db")), "nothing may fall back to SQLite files"
    script = textwrap.dedent(
        f"""
        import dagster as dg
        with dg.DagsterInstance.get() as instance:
            run = instance.get_run_by_id({result.run_id!r})
            mat = instance.get_latest_materialization_event(dg.AssetKey("doubled"))
            check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [dg.AssetCheckKey(dg.AssetKey("doubled"), "positive")]
            )
            print(run.status.value, mat.run_id == run.run_id, len(check))
        """
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
    assert other.stdout.split() == ["SUCCESS", "True", "1"]
