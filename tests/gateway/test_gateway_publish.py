"""A new publish (even with a new column) is served without a restart; asOf reads older snapshots;
a cursor keeps reading the snapshot it started on."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import duckdb

from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine

V1 = ProductSpec(
    department="transportation",
    product="traffic_counts",
    classification="public",
    owner="bob@city.example",
    description="Vehicles counted per sensor.",
    key="sensor",
    columns=(ColumnSpec("sensor", "varchar"), ColumnSpec("vehicles", "bigint")),
)
V2 = ProductSpec(**{**V1.__dict__, "columns": (*V1.columns, ColumnSpec("speed_kmh", "double"))})


def _publish(settings, spec: ProductSpec, sql: str, now: datetime | None = None) -> str:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {sql}")
    written = write_snapshot(con, "t", settings.snapshots_dir / "transportation" / "traffic_counts")
    con.close()
    return Catalog(get_engine(settings.metadata_url), settings.home).publish(spec, written, now=now).id


def _wait_for(server, query: str, user: str = "bob", timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = server.gql(query, user)
        if "errors" not in body or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_new_products_and_columns_are_served_without_restart(server) -> None:
    old = _publish(
        server.settings,
        V1,
        "SELECT 'S' || i AS sensor, CAST(i * 10 AS BIGINT) AS vehicles FROM range(30) t(i)",
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )
    body = _wait_for(
        server,
        "{ transportation { trafficCounts(first: 10) "
        "{ totalCount nodes { sensor vehicles } pageInfo { endCursor } } } }",
    )
    page = body["data"]["transportation"]["trafficCounts"]
    assert page["totalCount"] == 30
    cursor = page["pageInfo"]["endCursor"]

    new = _publish(
        server.settings,
        V2,
        "SELECT 'S' || i AS sensor, CAST(i AS BIGINT) AS vehicles, 50.0 AS speed_kmh FROM range(5) t(i)",
    )
    body = _wait_for(
        server, "{ transportation { trafficCounts { totalCount nodes { speedKmh } snapshot { id } } } }"
    )
    page = body["data"]["transportation"]["trafficCounts"]
    assert page["totalCount"] == 5 and page["snapshot"]["id"] == new
    assert {n["speedKmh"] for n in page["nodes"]} == {50.0}

    # asOf: the snapshot current at that time, with the new column absent (null)
    body = server.gql(
        '{ transportation { trafficCounts(asOf: "2026-06-01T00:00:00+00:00") '
        "{ totalCount nodes { vehicles speedKmh } snapshot { id } } } }",
        "bob",
    )
    page = body["data"]["transportation"]["trafficCounts"]
    assert page["snapshot"]["id"] == old and page["totalCount"] == 30
    assert page["nodes"][0]["speedKmh"] is None

    # a cursor from the old snapshot keeps paging through the old snapshot
    body = server.gql(
        f'{{ transportation {{ trafficCounts(first: 10, after: "{cursor}") '
        "{ nodes { sensor } snapshot { id } } } }",
        "bob",
    )
    page = body["data"]["transportation"]["trafficCounts"]
    assert page["snapshot"]["id"] == old
    assert [n["sensor"] for n in page["nodes"]] == sorted(f"S{i}" for i in range(30))[10:20]
    assert body["extensions"]["governance"]["transportation.traffic_counts"]["snapshotId"] == old


def test_as_of_before_any_snapshot_is_bad_input(server) -> None:
    body = server.gql('{ environment { airQuality(asOf: "2000-01-01T00:00:00Z") { totalCount } } }', "bob")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
