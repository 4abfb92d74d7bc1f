"""Catalog and snapshot publishing: atomic pointer moves, idempotent retries, time travel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import event

from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine

SPEC = ProductSpec(
    department="environment",
    product="air_quality",
    classification="public",
    owner="olga@city.example",
    description="Hourly air quality by station.",
    columns=(ColumnSpec("station_id", "varchar"), ColumnSpec("pm25", "double")),
    key="station_id",
)


@pytest.fixture
def catalog(metadata_url: str, tmp_path: Path) -> Catalog:
    return Catalog(get_engine(metadata_url), tmp_path).ensure_schema()


def _write(tmp_path: Path, values: list[tuple[str, float]]):
    con = duckdb.connect()
    con.execute("CREATE TABLE t (station_id VARCHAR, pm25 DOUBLE)")
    con.executemany("INSERT INTO t VALUES (?, ?)", values)
    return write_snapshot(con, "t", tmp_path / "snapshots", order_by=(("station_id", "ASC"),))


def test_publish_makes_snapshot_current_with_metadata(tmp_path: Path, catalog: Catalog) -> None:
    written = _write(tmp_path, [("s2", 3.0), ("s1", 1.5)])
    snapshot = catalog.publish(SPEC, written, run_id="run-1")
    assert catalog.current(SPEC.name) == snapshot
    assert snapshot.row_count == 2
    assert snapshot.schema == (("station_id", "VARCHAR"), ("pm25", "DOUBLE"))
    assert len(snapshot.checksum) == 64 and snapshot.path.exists()
    rows = duckdb.sql(f"SELECT station_id FROM read_parquet('{snapshot.path}')").fetchall()
    assert rows == [("s1",), ("s2",)], "snapshots are written sorted for row-group pruning"
    assert catalog.entry(SPEC.name).quality_status == "passed"


def test_republishing_identical_content_adds_no_snapshot(tmp_path: Path, catalog: Catalog) -> None:
    first = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    again = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    assert again.id == first.id
    assert len(catalog.snapshots(SPEC.name)) == 1


def test_failed_write_leaves_previous_snapshot_current_and_no_stray_file(
    tmp_path: Path, catalog: Catalog
) -> None:
    good = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    con = duckdb.connect()
    with pytest.raises(duckdb.Error):
        write_snapshot(con, "missing_table", tmp_path / "snapshots")
    assert catalog.current(SPEC.name) == good
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [good.path.name]


def test_failed_registration_rolls_back_pointer_and_row(tmp_path: Path, catalog: Catalog) -> None:
    good = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    newer = _write(tmp_path, [("s1", 2.0)])

    def fail_on_pointer_move(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE catalog_products") and "current_snapshot_id" in statement:
            raise RuntimeError("disk full while moving the pointer")

    event.listen(catalog.engine, "before_cursor_execute", fail_on_pointer_move)
    try:
        with pytest.raises(RuntimeError):
            catalog.publish(SPEC, newer)
    finally:
        event.remove(catalog.engine, "before_cursor_execute", fail_on_pointer_move)
    assert catalog.current(SPEC.name) == good
    assert [s.id for s in catalog.snapshots(SPEC.name)] == [good.id]


def test_failed_quality_gate_keeps_current_snapshot(tmp_path: Path, catalog: Catalog) -> None:
    good = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    catalog.record_quality(SPEC, "failed", {"checks": [{"check": "unique_station_id", "passed": False}]})
    entry = catalog.entry(SPEC.name)
    assert entry.quality_status == "failed"
    assert entry.current == good


def test_as_of_returns_the_snapshot_current_at_that_time(tmp_path: Path, catalog: Catalog) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old = catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]), now=t0)
    new = catalog.publish(SPEC, _write(tmp_path, [("s1", 9.0)]), now=t0 + timedelta(days=1))
    assert catalog.snapshot_as_of(SPEC.name, t0 + timedelta(hours=1)) == old
    assert catalog.snapshot_as_of(SPEC.name, t0 + timedelta(days=2)) == new
    assert catalog.snapshot_as_of(SPEC.name, t0 - timedelta(seconds=1)) is None


def test_catalog_version_moves_on_publish(tmp_path: Path, catalog: Catalog) -> None:
    before = catalog.version()
    catalog.publish(SPEC, _write(tmp_path, [("s1", 1.0)]))
    assert catalog.version() != before
