"""`lineage(product:, column:, direction:, depth:)`: nodes the caller may not discover are redacted
placeholders, never named — nor the jobs and tables that build them, nor what lies behind them.
Real uvicorn HTTP on an own home; the graph comes from civicmesh's own OpenLineage events, written
to the lineage outbox as a build writes them (an external producer may not write these jobs)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lineage import naming
from lineage.outbox import Outbox
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine

SALARIES = ProductSpec(
    department="hr",
    product="salaries",
    classification="restricted",
    owner="frank@city.example",
    description="Staff salaries.",
    columns=(ColumnSpec("employee_id", "integer"), ColumnSpec("salary", "double")),
    model_unique_id="model.hr.salaries",
)
SUMMARY = ProductSpec(
    department="city_ops",
    product="payroll_summary",
    classification="public",
    owner="olivia@city.example",
    description="Pay and service requests per unit.",
    columns=(
        ColumnSpec("unit", "varchar"),
        ColumnSpec("total_pay", "double"),
        ColumnSpec("requests", "bigint"),
    ),
    model_unique_id="model.city_ops.payroll_summary",
)
REQUESTS = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests.",
    columns=(ColumnSpec("request_id", "varchar"), ColumnSpec("district", "varchar")),
)

WAREHOUSE = "duckdb:///warehouse/warehouse.duckdb"
LANDING = {"namespace": "file", "name": "/landing/hr/secret_salaries.csv"}
RAW = {"namespace": WAREHOUSE, "name": "warehouse.raw_hr.salaries_raw"}
MART = {"namespace": WAREHOUSE, "name": "warehouse.main_hr.salaries"}


def _product(name: str, facets: dict | None = None) -> dict:
    ref = naming.product_dataset(name)
    return {"namespace": ref.namespace, "name": ref.name, **({"facets": facets} if facets else {})}


def _event(job: str, inputs: list[dict], outputs: list[dict]) -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "civicmesh", "name": job},
        "inputs": inputs,
        "outputs": outputs,
        "producer": "https://civicmesh.example/tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def _column_lineage() -> dict:
    salaries, requests = _product(SALARIES.name), _product(REQUESTS.name)
    source = {"_producer": "https://civicmesh.example/tests", "_schemaURL": "https://x.example/c.json"}
    return {
        "columnLineage": {
            **source,
            "fields": {
                "total_pay": {"inputFields": [{**_strip(salaries), "field": "salary"}]},
                "requests": {"inputFields": [{**_strip(requests), "field": "request_id"}]},
            },
        }
    }


def _strip(dataset: dict) -> dict:
    return {"namespace": dataset["namespace"], "name": dataset["name"]}


@pytest.fixture(scope="module")
def lineage_server(server, publish_product, tmp_path_factory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("lineage_home")
    settings = Settings.for_home(home, demo_mode=False)
    settings.ensure_dirs()
    publish_product(settings, SALARIES, "SELECT 1 AS employee_id, 2.0 AS salary")
    publish_product(settings, SUMMARY, "SELECT 'U' AS unit, 2.0 AS total_pay, CAST(3 AS BIGINT) AS requests")
    publish_product(settings, REQUESTS, "SELECT 'SR-1' AS request_id, 'D1' AS district")
    srv = type(server)(settings)
    srv.start()
    events = [
        _event("ingest.raw_hr.salaries_raw", [LANDING], [RAW]),
        _event("dbt.hr.salaries", [RAW], [MART]),
        _event("publish.hr.salaries", [MART], [_product(SALARIES.name)]),
        _event(
            "dbt.city_ops.payroll_summary",
            [MART, _product(SALARIES.name), _product(REQUESTS.name)],
            [_product(SUMMARY.name, _column_lineage())],
        ),
        # a product the catalog does not hold (e.g. not published yet), derived from service requests,
        # and a consumer of it
        _event("dbt.hr.request_costs", [_product(REQUESTS.name)], [_product("hr.request_costs")]),
        _event("consumer.frank.read", [_product("hr.request_costs")], []),
    ]
    Outbox(get_engine(settings.metadata_url)).ensure_schema().append(events)
    yield srv
    srv.stop()


LINEAGE = """query($p: String!, $c: String, $d: LineageDirection!) {
  lineage(product: $p, column: $c, direction: $d, depth: 6) {
    root direction nodes { id kind namespace name column depth redacted } edges { from to } } }"""


def _lineage(
    srv: Any, user: str, product: str, column: str | None = None, direction: str = "UPSTREAM"
) -> dict:
    deadline = time.monotonic() + 5
    while True:  # the graph catches up with the outbox on its next query
        body = srv.gql(LINEAGE, user, {"p": product, "c": column, "d": direction})
        nodes = (body.get("data") or {}).get("lineage") or {}
        if "errors" in body or len(nodes.get("nodes", ())) > 1 or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_hidden_upstream_is_redacted_never_named(lineage_server) -> None:
    body = _lineage(lineage_server, "mallory", SUMMARY.name)
    result = body["data"]["lineage"]
    text = json.dumps(body).lower()
    assert "salar" not in text and "landing" not in text, text  # product, jobs, tables, files
    names = {n["name"] for n in result["nodes"] if not n["redacted"]}
    assert {SUMMARY.name, REQUESTS.name, "dbt.city_ops.payroll_summary"} <= names
    redacted = [n for n in result["nodes"] if n["redacted"]]
    assert redacted and all(n["name"] == "(redacted)" and n["namespace"] == "" for n in redacted)
    assert all(n["id"].startswith("redacted:") for n in redacted)
    # placeholders keep their place: the summary's job still has a redacted input
    ids = {n["id"] for n in redacted}
    job = next(n["id"] for n in result["nodes"] if n["name"] == "dbt.city_ops.payroll_summary")
    assert any(e["to"] == job and e["from"] in ids for e in result["edges"])


def test_callers_who_may_discover_see_the_names(lineage_server) -> None:
    # the auditor; the owner of hr, who does not audit city_ops: the landing file without its path
    for user, landing in (("carol", LANDING["name"]), ("frank", "secret_salaries.csv")):
        body = _lineage(lineage_server, user, SUMMARY.name)
        names = {n["name"] for n in body["data"]["lineage"]["nodes"]}
        assert {SALARIES.name, "publish.hr.salaries", "dbt.hr.salaries", landing} <= names, names
        assert not any(n["redacted"] for n in body["data"]["lineage"]["nodes"])


def test_column_lineage_redacts_hidden_columns(lineage_server) -> None:
    srv = lineage_server
    hidden = _lineage(srv, "mallory", SUMMARY.name, "totalPay")["data"]["lineage"]
    assert hidden["root"].endswith("#total_pay")
    assert [n["redacted"] for n in hidden["nodes"]] == [False, True]
    assert hidden["nodes"][1]["column"] is None and "salar" not in json.dumps(hidden)
    visible = _lineage(srv, "mallory", SUMMARY.name, "requests")["data"]["lineage"]
    assert [(n["name"], n["column"]) for n in visible["nodes"]] == [
        (SUMMARY.name, "requests"),
        (REQUESTS.name, "request_id"),
    ]
    carol = _lineage(srv, "carol", SUMMARY.name, "total_pay")["data"]["lineage"]
    assert (SALARIES.name, "salary") in {(n["name"], n["column"]) for n in carol["nodes"]}
    bad = srv.gql(LINEAGE, "mallory", {"p": SUMMARY.name, "c": "salary", "d": "UPSTREAM"})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_downstream_from_a_visible_product_redacts_hidden_derivatives(lineage_server) -> None:
    # alice owns public_works (lineage right) but may not discover anything in hr
    body = _lineage(lineage_server, "alice", REQUESTS.name, direction="DOWNSTREAM")
    nodes = body["data"]["lineage"]["nodes"]
    assert SUMMARY.name in {n["name"] for n in nodes}
    text = json.dumps(body)
    assert "request_costs" not in text and "consumer.frank" not in text, text
    # the job and the product; its consumer is a reader identity, shown only to who audits hr.request_costs
    assert sum(n["redacted"] for n in nodes) == 2
    assert not any(n["kind"] == "job" and n["name"].startswith("consumer.") for n in nodes)


def test_lineage_of_a_hidden_product_is_like_a_missing_one(lineage_server) -> None:
    srv = lineage_server
    hidden = srv.gql(LINEAGE, "mallory", {"p": SALARIES.name, "c": None, "d": "UPSTREAM"})
    missing = srv.gql(LINEAGE, "mallory", {"p": "hr.salariez", "c": None, "d": "UPSTREAM"})
    assert hidden["errors"][0]["message"] == missing["errors"][0]["message"]
    assert hidden["errors"][0]["extensions"] == missing["errors"][0]["extensions"]
    # an internal product: mallory discovers it, but lineage is no built-in right there
    denied = srv.gql(LINEAGE, "mallory", {"p": REQUESTS.name, "c": None, "d": "UPSTREAM"})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
