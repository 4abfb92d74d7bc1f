"""The freshness clock: "last verified" apart from "last changed". A rebuild whose data did not change
republishes nothing yet keeps the product fresh; without a new verification it turns stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import select, text, update

from meshcore.catalog import Catalog, snapshots_table, verifications_table
from meshcore.freshness import freshness
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine
from tests.mesh import BuiltMesh, cli, copy_home

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
SPEC = ProductSpec(
    department="environment",
    product="air_quality",
    classification="public",
    owner="erin@city.example",
    description="Hourly air quality.",
    columns=(ColumnSpec("station", "varchar"), ColumnSpec("pm25", "double")),
    key="station",
    freshness_sla_hours=24,
)


def _publish(catalog: Catalog, folder: Path, pm25: float, now: datetime) -> str:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT 's1' AS station, {pm25}::DOUBLE AS pm25")
    return catalog.publish(SPEC, write_snapshot(con, "t", folder / "snapshots" / "aq"), now=now).id


def test_an_unchanged_republish_verifies_without_changing(tmp_path: Path) -> None:
    catalog = Catalog(get_engine(f"sqlite:///{tmp_path / 'meta.db'}"), tmp_path).ensure_schema()
    first = _publish(catalog, tmp_path, 1.0, T0)
    assert _publish(catalog, tmp_path, 1.0, T0 + timedelta(hours=30)) == first  # same content
    entry = catalog.entry(SPEC.name)
    assert entry is not None and entry.current is not None
    state = freshness(entry, T0 + timedelta(hours=31))
    assert (state.status, state.last_changed, state.last_verified) == ("fresh", T0, T0 + timedelta(hours=30))
    assert "data unchanged for 31.0 h" in state.description
    assert freshness(entry, T0 + timedelta(hours=54, minutes=1)).status == "stale"

    changed = _publish(catalog, tmp_path, 2.0, T0 + timedelta(hours=40))
    entry = catalog.entry(SPEC.name)
    assert entry is not None and entry.current is not None and entry.current.id == changed
    assert entry.verified_at == entry.current.published_at == T0 + timedelta(hours=40)


def test_a_failed_gate_verifies_nothing(tmp_path: Path) -> None:
    catalog = Catalog(get_engine(f"sqlite:///{tmp_path / 'meta.db'}"), tmp_path).ensure_schema()
    _publish(catalog, tmp_path, 1.0, T0)
    _publish(catalog, tmp_path, 1.0, T0 + timedelta(hours=10))
    catalog.record_quality(SPEC, "failed", {"blocking": ["unique test failed"]})  # a later build
    entry = catalog.entry(SPEC.name)
    assert entry is not None and entry.verified_at == T0 + timedelta(hours=10)
    assert freshness(entry, T0 + timedelta(hours=33)).status == "fresh"
    assert freshness(entry, T0 + timedelta(hours=35)).status == "stale"


def test_a_store_from_before_verifications_reads_with_publish_times(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    _publish(Catalog(get_engine(url), tmp_path).ensure_schema(), tmp_path, 1.0, T0)
    with get_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE catalog_verifications"))
    entry = Catalog(get_engine(url), tmp_path).entry(SPEC.name)  # a reader that never migrates
    assert entry is not None and entry.verified_at is None
    assert freshness(entry, T0 + timedelta(hours=1)).last_verified == T0


FRESHNESS = (
    '{ product(name: "public_works.service_requests") '
    "{ currentSnapshot { id } freshness { lastChangedAt lastVerifiedAt ageHours stale } } }"
)


def _freshness(home: Path) -> dict:
    result = cli(home, "query", "--as", "alice", FRESHNESS)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)["data"]["product"]


@pytest.mark.slow
def test_a_rebuild_with_unchanged_data_keeps_the_product_fresh(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "home")
    engine = get_engine(f"sqlite:///{home / 'metadata.db'}")
    two_days = timedelta(hours=48)
    with engine.begin() as conn:  # as if the last build ran two days ago
        for row in conn.execute(select(snapshots_table.c.id, snapshots_table.c.published_at)).all():
            conn.execute(
                update(snapshots_table)
                .where(snapshots_table.c.id == row.id)
                .values(published_at=row.published_at - two_days)
            )
        for row in conn.execute(
            select(verifications_table.c.product, verifications_table.c.verified_at)
        ).all():
            conn.execute(
                update(verifications_table)
                .where(verifications_table.c.product == row.product)
                .values(verified_at=row.verified_at - two_days)
            )
    before = _freshness(home)
    assert before["freshness"]["stale"] is True, before  # precondition: the SLA is 24 h

    build = cli(home, "build")
    assert build.returncode == 0, build.stderr[-3000:]
    after = _freshness(home)
    assert after["currentSnapshot"]["id"] == before["currentSnapshot"]["id"], (
        "unchanged data: no new snapshot"
    )
    assert after["freshness"]["stale"] is False, after
    assert after["freshness"]["lastChangedAt"] == before["freshness"]["lastChangedAt"]
    verified = datetime.fromisoformat(after["freshness"]["lastVerifiedAt"])
    assert datetime.now(UTC) - verified < timedelta(hours=1)
    assert after["freshness"]["ageHours"] < 1
