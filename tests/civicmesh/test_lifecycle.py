"""Product lifecycle in the catalog: schema evolution, freshness and snapshot retention."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from meshcore.catalog import Catalog
from meshcore.evolution import BreakingSchemaChange
from meshcore.freshness import freshness
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.retention import collect_garbage
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SPEC = ProductSpec(
    department="transportation",
    product="traffic_counts",
    classification="public",
    owner="tom@city.example",
    description="Hourly vehicle counts.",
    columns=(ColumnSpec("sensor_id", "varchar"), ColumnSpec("vehicles", "integer")),
    key="sensor_id",
    freshness_sla_hours=24,
)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(get_engine(f"sqlite:///{tmp_path / 'meta.db'}"), tmp_path).ensure_schema()


def _publish(tmp_path: Path, catalog: Catalog, value: int, spec: ProductSpec = SPEC, now: datetime = T0):
    con = duckdb.connect()
    columns = ", ".join(f"{c.name} {c.data_type}" for c in spec.columns)
    con.execute(f"CREATE TABLE t ({columns})")
    values = ["'s1'", str(value), *["0"] * (len(spec.columns) - 2)][: len(spec.columns)]
    con.execute(f"INSERT INTO t VALUES ({', '.join(values)})")
    written = write_snapshot(con, "t", tmp_path / "snapshots" / spec.name)
    return catalog.publish(spec, written, now=now)


def test_added_column_publishes_a_new_snapshot(tmp_path: Path, catalog: Catalog) -> None:
    _publish(tmp_path, catalog, 1)
    wider = dataclasses.replace(SPEC, columns=(*SPEC.columns, ColumnSpec("lane", "integer")))
    snapshot = _publish(tmp_path, catalog, 2, spec=wider, now=T0 + timedelta(hours=1))
    assert catalog.current(SPEC.name) == snapshot
    assert [c.name for c in snapshot.spec.columns] == ["sensor_id", "vehicles", "lane"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ((ColumnSpec("sensor_id", "varchar"),), "column 'vehicles' was dropped"),
        (
            (ColumnSpec("sensor_id", "varchar"), ColumnSpec("vehicles", "varchar")),
            "column 'vehicles' changed type integer -> varchar",
        ),
    ],
)
def test_breaking_change_is_refused_and_current_stays(
    tmp_path: Path, catalog: Catalog, columns: tuple[ColumnSpec, ...], message: str
) -> None:
    good = _publish(tmp_path, catalog, 1)
    broken = dataclasses.replace(SPEC, columns=columns)
    with pytest.raises(BreakingSchemaChange, match=message) as info:
        _publish(tmp_path, catalog, 2, spec=broken, now=T0 + timedelta(hours=1))
    assert "new model version" in str(info.value)
    assert catalog.current(SPEC.name) == good


def test_new_model_version_is_a_separate_product(tmp_path: Path, catalog: Catalog) -> None:
    _publish(tmp_path, catalog, 1)
    v2 = dataclasses.replace(
        SPEC, product="traffic_counts_v2", version=2, columns=(ColumnSpec("sensor_id", "varchar"),)
    )
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 's1' AS sensor_id")
    catalog.publish(v2, write_snapshot(con, "t", tmp_path / "snapshots" / "v2"), now=T0)
    assert {e.spec.name for e in catalog.entries()} == {SPEC.name, v2.name}


def test_freshness_turns_stale_when_the_clock_passes_the_sla(tmp_path: Path, catalog: Catalog) -> None:
    _publish(tmp_path, catalog, 1)
    entry = catalog.entry(SPEC.name)
    assert freshness(entry, T0 + timedelta(hours=23, minutes=59)).status == "fresh"
    stale = freshness(entry, T0 + timedelta(hours=24, minutes=1))
    assert stale.status == "stale"
    assert "SLA 24 h" in stale.description


def test_gc_keeps_current_newest_and_young_snapshots(tmp_path: Path, catalog: Catalog) -> None:
    published = [_publish(tmp_path, catalog, v, now=T0 + timedelta(days=v)) for v in range(6)]
    now = T0 + timedelta(days=5, hours=12)
    report = collect_garbage(catalog, tmp_path / "snapshots", grace=timedelta(days=2), keep=2, now=now)
    # kept: current (v5), the two newest (v5, v4), anything younger than 2 days (v4, v5 again) -> v0..v3 go
    assert sorted(report.removed_snapshots) == sorted(s.id for s in published[:4])
    assert [s.id for s in catalog.snapshots(SPEC.name)] == [published[5].id, published[4].id]
    assert all(not s.path.exists() for s in published[:4])
    assert all(s.path.exists() for s in published[4:])


def test_gc_never_deletes_a_file_shared_with_a_kept_snapshot(tmp_path: Path, catalog: Catalog) -> None:
    first = _publish(tmp_path, catalog, 1, now=T0)
    _publish(tmp_path, catalog, 2, now=T0 + timedelta(days=1))
    again = _publish(tmp_path, catalog, 1, now=T0 + timedelta(days=2))  # same content as `first`
    assert again.path == first.path and again.id != first.id
    collect_garbage(
        catalog, tmp_path / "snapshots", grace=timedelta(hours=1), keep=1, now=T0 + timedelta(days=9)
    )
    assert catalog.current(SPEC.name) == again
    assert again.path.exists()


def test_gc_removes_orphans_only_after_grace(tmp_path: Path, catalog: Catalog) -> None:
    current = _publish(tmp_path, catalog, 1)
    orphan = current.path.parent / "deadbeef.parquet"
    orphan.write_bytes(b"PAR1")
    old = (T0 - timedelta(days=3)).timestamp()
    os.utime(orphan, (old, old))
    young = current.path.parent / "cafebabe.parquet"
    young.write_bytes(b"PAR1")
    collect_garbage(catalog, tmp_path / "snapshots", grace=timedelta(days=1), now=T0)
    assert not orphan.exists()
    assert young.exists() and current.path.exists()


def test_moving_latest_version_may_break_the_plain_name(tmp_path: Path, catalog: Catalog) -> None:
    v1 = dataclasses.replace(SPEC, version=1)
    _publish(tmp_path, catalog, 1, spec=v1)
    v2 = dataclasses.replace(
        SPEC, version=2, columns=(ColumnSpec("sensor_id", "varchar"), ColumnSpec("vehicles", "bigint"))
    )
    snapshot = _publish(tmp_path, catalog, 2, spec=v2, now=T0 + timedelta(hours=1))
    assert catalog.current(SPEC.name) == snapshot
    with pytest.raises(BreakingSchemaChange):  # but not within one version
        broken = dataclasses.replace(v2, columns=(ColumnSpec("sensor_id", "varchar"),))
        _publish(tmp_path, catalog, 3, spec=broken, now=T0 + timedelta(hours=2))
