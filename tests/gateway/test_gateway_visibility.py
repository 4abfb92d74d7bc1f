"""Undiscoverable = nonexistent, in introspection and in validation errors too (demo mode: introspection
on), through real uvicorn HTTP on an own home. Also: no "did you mean" anywhere, schemas shared per
discoverable set, and a grant that changes what a caller may name takes effect."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshcore.accesslog import AccessLog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine


def _spec(department: str, product: str, classification: str, columns: tuple[ColumnSpec, ...]) -> ProductSpec:
    return ProductSpec(
        department=department,
        product=product,
        classification=classification,
        owner="owner@city.example",
        description=f"{department} {product}",
        columns=columns,
    )


PRODUCTS = [
    (
        _spec(
            "public_works",
            "service_requests",
            "internal",
            (
                ColumnSpec("request_id", "varchar"),
                ColumnSpec("district", "varchar"),
                ColumnSpec("created_at", "timestamp"),
                ColumnSpec("requester_name", "varchar", "", ("pii",), "hash"),
            ),
        ),
        "SELECT printf('SR-%04d', i) AS request_id, 'D' || (i % 3) AS district, "
        "TIMESTAMP '2026-01-01' + INTERVAL (i) HOUR AS created_at, 'Person ' || i AS requester_name "
        "FROM range(12) t(i)",
    ),
    (
        _spec("finance", "vendor_payments", "confidential", (ColumnSpec("vendor", "varchar"),)),
        "SELECT 'V' || i AS vendor FROM range(4) t(i)",
    ),
    (
        _spec(
            "hr",
            "salaries",
            "restricted",
            (ColumnSpec("employee_id", "integer"), ColumnSpec("salary", "double")),
        ),
        "SELECT CAST(i AS INTEGER) AS employee_id, 1000.0 * i AS salary FROM range(3) t(i)",
    ),
    (  # restricted: only finance's owners (by policy) and the auditor discover it
        _spec("finance", "ledger", "restricted", (ColumnSpec("entry", "integer"),)),
        "SELECT CAST(i AS INTEGER) AS entry FROM range(2) t(i)",
    ),
    (
        _spec("hr", "headcount", "public", (ColumnSpec("unit", "varchar"), ColumnSpec("staff", "integer"))),
        "SELECT 'U' || i AS unit, CAST(i AS INTEGER) AS staff FROM range(3) t(i)",
    ),
]


@pytest.fixture(scope="module")
def demo_server(server, publish_product, tmp_path_factory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("visibility_home")
    settings = Settings.for_home(home, demo_mode=True)
    settings.ensure_dirs()
    for spec, sql in PRODUCTS:
        publish_product(settings, spec, sql)
    srv = type(server)(settings)  # the conftest Server class, on this home, in demo mode
    srv.start()
    yield srv
    srv.stop()


TYPES = "{ __schema { types { name } queryType { fields { name } } } }"


def _types(srv: Any, user: str) -> set[str]:
    return {t["name"] for t in srv.gql(TYPES, user)["data"]["__schema"]["types"]}


def _fields(srv: Any, user: str, type_name: str) -> set[str] | None:
    body = srv.gql("query($t: String!) { __type(name: $t) { fields { name } } }", user, {"t": type_name})
    found = body["data"]["__type"]
    return None if found is None else {f["name"] for f in found["fields"]}


def test_introspection_lists_only_what_the_caller_may_discover(demo_server) -> None:
    srv = demo_server
    mallory = _types(srv, "mallory")
    assert {"HrDepartment", "HrHeadcountRow", "PublicWorksServiceRequestsRow"} <= mallory
    assert not {t for t in mallory if t.startswith("HrSalaries")}, mallory
    assert _fields(srv, "mallory", "HrDepartment") == {"headcount", "headcountAggregate"}
    # confidential products are discoverable by all staff (to request them), restricted are not
    assert "FinanceVendorPaymentsRow" in mallory
    assert "finance" in _fields(srv, "mallory", "Query")
    # the owners and the auditor see more, each their own
    assert _fields(srv, "frank", "HrDepartment") == {
        "headcount",
        "headcountAggregate",
        "salaries",
        "salariesAggregate",
    }
    assert "FinanceVendorPaymentsRow" in _types(srv, "fiona") and "HrSalariesRow" not in _types(srv, "fiona")
    assert {"HrSalariesRow", "FinanceVendorPaymentsRow"} <= _types(srv, "carol")
    # the full SDL text never names a hidden product either
    full = json.dumps(srv.gql("{ __schema { types { name fields { name description } } } }", "mallory"))
    assert "salaries" not in full.lower()


@pytest.mark.parametrize(
    ("hidden", "never_existed"),
    [
        ("{ hr { salaries { totalCount } } }", "{ hr { salariez { totalCount } } }"),
        (
            "{ hr { salariesAggregate { groups { count } } } }",
            "{ hr { salariezAggregate { groups { count } } } }",
        ),
        ('{ __type(name: "HrSalariesRow") { name } }', '{ __type(name: "HrSalariezRow") { name } }'),
        (
            "fragment F on HrSalariesRow { salary } { hr { headcount { totalCount } } }",
            "fragment F on HrSalariezRow { salary } { hr { headcount { totalCount } } }",
        ),
        (
            "query($w: HrSalariesWhere) { hr { headcount { totalCount } } }",
            "query($w: HrSalariezWhere) { hr { headcount { totalCount } } }",
        ),
    ],
)
def test_hidden_product_fails_exactly_like_one_that_never_existed(demo_server, hidden, never_existed) -> None:
    srv = demo_server
    a = srv.post(hidden, "mallory")
    b = srv.post(never_existed, "mallory")
    assert a.status_code == b.status_code == 200
    # same length names: the two answers are identical up to the name, locations included
    swap = {"salaries": "salariez", "Salaries": "Salariez"}
    text = a.text
    for old, new in swap.items():
        text = text.replace(old, new)
    assert json.loads(text) == b.json()
    for body in (a.json(), b.json()):
        assert "Did you mean" not in json.dumps(body)


@pytest.mark.parametrize(
    "query",
    [
        "{ hr { salarie { totalCount } } }",  # field
        "fragment F on HrSalariesRo { salary } { hr { salaries { totalCount } } }",  # type
        "{ hr { salaries(frist: 1) { totalCount } } }",  # argument
        "{ hr { salaries(orderBy: [{salary: DES}]) { totalCount } } }",  # enum value
        "{ hr { salaries(where: {salry: {eq: 1}}) { totalCount } } }",  # input field
        "{ hr { salaries { nodes } } }",  # leaf selection
        'mutation { requestAccess(product: "hr.salaries", purpose: "x", action: REED) { id } }',
    ],
)
def test_no_error_ever_suggests_a_name(demo_server, query: str) -> None:
    body = demo_server.gql(query, "frank")  # frank may see every name here: nothing may be suggested
    assert body["errors"] and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "did you mean" not in json.dumps(body).lower()


def test_bad_variable_values_are_bad_user_input_without_suggestions(demo_server) -> None:
    query = "query($d: SortDirection!) { hr { headcount(orderBy: [{staff: $d}]) { totalCount } } }"
    body = demo_server.gql(query, "mallory", {"d": "DES"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Internal error" not in body["errors"][0]["message"]
    assert "did you mean" not in json.dumps(body).lower()


def test_naming_a_hidden_product_is_audited(demo_server) -> None:
    srv = demo_server
    log = AccessLog(get_engine(srv.settings.metadata_url))
    before = log.head()
    srv.post("{ hr { salaries { totalCount } } }", "mallory")
    srv.post("{ hr { salariez { totalCount } } }", "mallory")
    rows = list(log.rows(after_seq=before))
    probe = [r for r in rows if r["product"] == "hr.salaries"]
    assert len(probe) == 1 and probe[0]["decision"] == "deny" and probe[0]["subject"] == "mallory"
    assert probe[0]["error_code"] == "BAD_USER_INPUT"
    assert [r["product"] for r in rows if r["product"] != "hr.salaries"] == [None]  # the typo: no product


def _callers(srv: Any) -> Any:
    return srv.server.config.app.state.gateway.view.schema.callers


def test_one_schema_per_discoverable_set_not_per_request(demo_server) -> None:
    srv = demo_server
    query = "{ hr { headcount { totalCount } } }"
    srv.gql(query, "mallory")
    callers = _callers(srv)
    builds = callers.builds
    for user in ("mallory", "bob", "mallory", "bob"):  # bob: the same set as mallory here
        assert "errors" not in srv.gql(query, user)
    for _ in range(2):  # the auditor reads no rows, but names every product
        assert (
            "errors" not in srv.gql("{ me { user } hr { salaries { totalCount } } }", "carol")["data"]["me"]
        )
    assert callers.builds == builds  # shared; the auditor sees everything: the full schema, no build
    srv.gql(query, "fiona")  # another set (finance is hers): built at most once
    builds = callers.builds
    started = time.perf_counter()
    for user in ["fiona", "erin"] * 10:  # erin is a finance member: the same set as fiona
        assert "errors" not in srv.gql(query, user)
    assert callers.builds == builds
    assert (time.perf_counter() - started) / 20 < 0.25


REQUEST = (
    'mutation { requestAccess(product: "hr.salaries", action: READ, purpose: "pay audit", days: 1) { id } }'
)


def test_a_grant_puts_the_product_into_the_callers_schema_and_a_revocation_takes_it_out(demo_server) -> None:
    srv = demo_server

    def until(check: Any) -> Any:
        deadline = time.monotonic() + 5
        while not (value := check()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return value

    assert _fields(srv, "mallory", "HrSalariesRow") is None
    rid = srv.gql(REQUEST, "mallory")["data"]["requestAccess"]["id"]
    approve = "mutation($id: Int!) { approveAccessRequest(id: $id) { state } }"
    assert srv.gql(approve, "frank", {"id": rid})["data"]["approveAccessRequest"]["state"] == "ACTIVE"
    assert until(lambda: _fields(srv, "mallory", "HrSalariesRow")) == {"employeeId", "salary"}
    assert (
        srv.gql("{ hr { salaries { totalCount } } }", "mallory")["data"]["hr"]["salaries"]["totalCount"] == 3
    )
    revoke = "mutation($id: Int!) { revokeAccess(id: $id) { state } }"
    assert srv.gql(revoke, "frank", {"id": rid})["data"]["revokeAccess"]["state"] == "REVOKED"
    assert until(lambda: _fields(srv, "mallory", "HrSalariesRow") is None)


def test_after_a_publish_the_schemas_in_use_are_warmed_in_the_background(
    demo_server, publish_product
) -> None:
    srv = demo_server
    for user in ("mallory", "frank"):  # two sets in use
        srv.gql("{ me { user } }", user)
    old = _callers(srv)
    spec = _spec("environment", "noise", "public", (ColumnSpec("db", "double"),))
    publish_product(srv.settings, spec, "SELECT 40.0 AS db")
    deadline = time.monotonic() + 10
    while _callers(srv) is old and time.monotonic() < deadline:
        srv.gql("{ me { user } }", "carol")  # a request triggers the catalog refresh
        time.sleep(0.2)
    new = _callers(srv)
    assert new is not old
    for thread in threading.enumerate():
        if thread.name == "civicmesh-schema-warm":
            thread.join(10)
    assert new.builds >= 2  # mallory's and frank's sets (and others in use), before they asked
    builds = new.builds
    body = srv.gql("{ environment { noise { totalCount } } }", "mallory")
    assert body["data"]["environment"]["noise"]["totalCount"] == 1
    assert new.builds == builds
