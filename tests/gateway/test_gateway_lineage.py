"""Lineage through the gateway: the `lineage` field (right `lineage`) and `POST /api/v1/lineage`
(right `produce_lineage`, held by the producer identity `airflow`)."""

from __future__ import annotations

import json
import time
import uuid

from lineage import naming
from lineage.outbox import Outbox
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine

SR = "public_works.service_requests"
LINEAGE = (
    "query($p: String!, $d: LineageDirection!) { lineage(product: $p, direction: $d, depth: 3) "
    "{ root direction nodes { id kind name depth } edges { from to } } }"
)


def _external_event() -> dict:
    """A report built outside civicmesh from a published product (what a producer may state)."""
    ref = naming.product_dataset("environment.air_quality")
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "city-etl", "name": "etl.stations"},
        "inputs": [{"namespace": ref.namespace, "name": ref.name}],
        "outputs": [{"namespace": "file", "name": "/exchange/stations.csv"}],
        "producer": "https://etl.city.example",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def test_downstream_lineage_shows_who_read_a_product(server) -> None:
    server.gql("{ publicWorks { serviceRequests(first: 1) { nodes { requestId } } } }", "bob")
    body = server.gql(LINEAGE, "alice", {"p": SR, "d": "DOWNSTREAM"})
    result = body["data"]["lineage"]
    assert result["direction"] == "downstream"
    jobs = {n["name"] for n in result["nodes"] if n["kind"] == "job"}
    assert any(name.startswith("consumer.bob") for name in jobs), jobs


def test_lineage_needs_the_right_and_hides_unknown_products(server) -> None:
    denied = server.gql(LINEAGE, "mallory", {"p": SR, "d": "UPSTREAM"})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hidden = server.gql(LINEAGE, "mallory", {"p": "hr.salaries", "d": "UPSTREAM"})
    missing = server.gql(LINEAGE, "mallory", {"p": "hr.nope", "d": "UPSTREAM"})
    assert hidden["errors"][0]["message"] == missing["errors"][0]["message"]
    assert server.gql(LINEAGE, "carol", {"p": "hr.salaries", "d": "UPSTREAM"})["data"]["lineage"]


def test_external_events_are_accepted_and_show_up_downstream(server) -> None:
    headers = {"Authorization": f"Bearer {server.token('airflow')}"}
    assert server.client.post("/api/v1/lineage", json=_external_event()).status_code == 401
    bad = server.client.post("/api/v1/lineage", content=b"{}", headers=headers)
    assert bad.status_code == 400 and bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    ok = server.client.post("/api/v1/lineage", content=json.dumps(_external_event()), headers=headers)
    assert ok.status_code == 201, ok.text
    body = server.gql(LINEAGE, "carol", {"p": "environment.air_quality", "d": "DOWNSTREAM"})
    names = {n["name"] for n in body["data"]["lineage"]["nodes"]}
    assert {"etl.stations", "/exchange/stations.csv"} <= names  # carol audits: the full path
    body = server.gql(LINEAGE, "bob", {"p": "environment.air_quality", "d": "DOWNSTREAM"})
    names = {n["name"] for n in body["data"]["lineage"]["nodes"]}
    assert {"etl.stations", "stations.csv"} <= names and "/exchange" not in json.dumps(body)


DERIVED = """
query($p: String!) { readersOfDerived(product: $p) { subject product reads rows maskedColumns } }
"""


def test_readers_of_data_derived_from_a_pii_product(server, gw_settings, publish_product) -> None:
    summary = ProductSpec(
        department="city_ops",
        product="district_summary",
        classification="internal",
        owner="frank@city.example",
        description="Requests per district, derived from public_works.service_requests.",
        columns=(ColumnSpec("district", "varchar"), ColumnSpec("requests", "bigint")),
    )
    publish_product(
        gw_settings, summary, "SELECT 'D' || i AS district, CAST(i AS BIGINT) AS requests FROM range(3) t(i)"
    )
    sr, out = naming.product_dataset(SR), naming.product_dataset(summary.name)
    event = {
        **_external_event(),
        "job": {"namespace": "civicmesh", "name": "dbt.city_ops.district_summary"},
        "inputs": [{"namespace": sr.namespace, "name": sr.name}],
        "outputs": [{"namespace": out.namespace, "name": out.name}],
    }
    Outbox(get_engine(gw_settings.metadata_url)).append([event])  # as civicmesh's build records it
    body = None
    for _ in range(30):  # the new product is served within a second
        body = server.gql("{ cityOps { districtSummary { nodes { district } } } }", "mallory")
        if "errors" not in body:
            break
        time.sleep(0.2)
    assert body is not None and "errors" not in body, body
    # a reader of the source itself (this test does not rely on an earlier test having read it)
    assert "errors" not in server.gql(
        "{ publicWorks { serviceRequests(first: 1) { nodes { requestId } } } }", "bob"
    )
    readers = server.gql(DERIVED, "carol", {"p": SR})["data"]["readersOfDerived"]
    assert any(r["subject"] == "mallory" and r["product"] == summary.name for r in readers)
    assert any(r["product"] == SR for r in readers)
    # an owner of public_works audits SR but not the city_ops derivative: it is left out, unnamed
    mine = server.gql(DERIVED, "alice", {"p": SR})
    assert {r["product"] for r in mine["data"]["readersOfDerived"]} == {SR}
    assert server.gql(DERIVED, "mallory", {"p": SR})["errors"][0]["extensions"]["code"] == "FORBIDDEN"
