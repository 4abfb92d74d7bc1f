"""Exports decide like reads (real HTTP): the masks come from the snapshot being served, `asOf`
included, through the one function GraphQL reads use. An older snapshot's PII columns that the
current spec dropped or no longer declares are masked in an export exactly as GraphQL masks them."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from meshcore.catalog import Catalog, snapshots_table
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine

OLD_TIME = datetime(2026, 2, 1, tzinfo=UTC)
AS_OF = "2026-02-02T00:00:00+00:00"

# v1 declared `holder_email` PII; v2 (a new model version) no longer carries it at all
PERMITS_V1 = ProductSpec(
    department="transportation",
    product="parking_permits",
    classification="internal",
    owner="tomas@city.example",
    description="Residential parking permits.",
    key="permit_id",
    columns=(
        ColumnSpec("permit_id", "varchar"),
        ColumnSpec("zone", "varchar"),
        ColumnSpec("holder_email", "varchar", "Permit holder", ("pii",), "hash"),
    ),
)
PERMITS_V2 = replace(PERMITS_V1, version=2, columns=PERMITS_V1.columns[:2])

# v1 declared `plate` PII; v2 keeps the column but as a non-personal fleet id (masked no more)
FLEET_V1 = ProductSpec(
    department="transportation",
    product="fleet_trips",
    classification="internal",
    owner="tomas@city.example",
    description="Trips of city vehicles.",
    key="trip_id",
    columns=(
        ColumnSpec("trip_id", "varchar"),
        ColumnSpec("plate", "varchar", "Licence plate", ("pii",), "partial"),
        ColumnSpec("km", "double"),
    ),
)
FLEET_V2 = replace(
    FLEET_V1, columns=(FLEET_V1.columns[0], ColumnSpec("plate", "varchar"), FLEET_V1.columns[2])
)


def _backdate(settings, snapshot_id: str) -> None:
    catalog = Catalog(get_engine(settings.metadata_url))
    with catalog.engine.begin() as conn:
        conn.execute(
            snapshots_table.update().where(snapshots_table.c.id == snapshot_id).values(published_at=OLD_TIME)
        )


@pytest.fixture(scope="module")
def published(server, publish_product) -> None:
    old = publish_product(
        server.settings,
        PERMITS_V1,
        "SELECT 'P-' || i AS permit_id, 'Z' || (i % 2) AS zone, "
        "'holder' || i || '@mail.example' AS holder_email FROM range(4) t(i)",
    )
    _backdate(server.settings, old.id)
    publish_product(
        server.settings, PERMITS_V2, "SELECT 'P-' || i AS permit_id, 'Z1' AS zone FROM range(2) t(i)"
    )
    old = publish_product(
        server.settings,
        FLEET_V1,
        "SELECT 'T-' || i AS trip_id, 'CITY-' || (1000 + i) AS plate, CAST(i AS DOUBLE) AS km "
        "FROM range(4) t(i)",
    )
    _backdate(server.settings, old.id)
    publish_product(
        server.settings,
        FLEET_V2,
        "SELECT 'T-' || i AS trip_id, 'F' || i AS plate, CAST(i AS DOUBLE) AS km FROM range(3) t(i)",
    )
    deadline = time.monotonic() + 10
    query = "{ transportation { fleetTrips { totalCount } parkingPermits { totalCount } } }"
    while "errors" in server.gql(query, "bob") and time.monotonic() < deadline:
        time.sleep(0.2)  # until the gateway has picked the new products up


def _export(server, user: str, target: str, **params: str) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    response = server.client.get(f"/exports/{target}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def test_an_export_as_of_masks_a_pii_column_the_current_spec_no_longer_declares_like_graphql(
    server, published
) -> None:
    body = server.gql(
        f'{{ transportation {{ fleetTrips(asOf: "{AS_OF}", orderBy: [{{tripId: ASC}}]) '
        "{ nodes { tripId plate } } } }",
        "bob",
    )
    graphql = {n["tripId"]: n["plate"] for n in body["data"]["transportation"]["fleetTrips"]["nodes"]}
    assert body["extensions"]["governance"]["transportation.fleet_trips"]["maskedColumns"] == {
        "plate": "partial"
    }
    exported = {
        r["trip_id"]: r["plate"] for r in _export(server, "bob", "transportation.fleet_trips.csv", asOf=AS_OF)
    }
    assert exported == graphql == {f"T-{i}": f"***{1000 + i}" for i in range(4)}
    # the current snapshot's plates are fleet ids, declared non-personal: served as they are
    current = _export(server, "bob", "transportation.fleet_trips.csv")
    assert [r["plate"] for r in current] == ["F0", "F1", "F2"]


def test_an_export_as_of_masks_a_pii_column_the_current_spec_dropped(server, published) -> None:
    rows = _export(server, "bob", "transportation.parking_permits.csv", asOf=AS_OF)
    assert len(rows) == 4
    assert all(r["holder_email"].startswith("p_") for r in rows), rows  # the v1 mask: keyed hash
    assert not any("@" in r["holder_email"] for r in rows)
    assert len({r["holder_email"] for r in rows}) == 4  # one stable pseudonym per person


def test_an_owner_with_read_pii_exports_the_old_column_unmasked(server, published) -> None:
    rows = _export(server, "tomas", "transportation.parking_permits.csv", asOf=AS_OF)
    assert sorted(r["holder_email"] for r in rows) == [f"holder{i}@mail.example" for i in range(4)]
