"""Hostile values against a PostgreSQL store (break 11): PostgreSQL refuses a NUL (U+0000) in text and
a string longer than its VARCHAR(n) column, where SQLite takes both. A product name holding NUL or
300 characters (an export path, `lineage(product:)`, `accessLog(product:)`, an operation name) went
into the access-log record, its insert failed, and the request was HTTP 503 with no record; every
other request in the same group commit got 503 too. A purpose holding NUL was an internal error;
a lineage event with a 56-character eventTime or a numeric runId was 503 or 500.

Now each is answered with its own coded refusal and exactly one record, and concurrent innocent
requests are untouched. Real uvicorn HTTP, a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from meshcore.accesslog import AccessLog
from tests.gateway.conftest import Server

LINEAGE = "query($p: String!) { lineage(product: $p) { root } }"
AUDIT = "query($p: String!) { accessLog(product: $p) { totalCount } }"
READERS = "query($p: String!) { readersOfDerived(product: $p) { subject } }"
REQUEST = "mutation($p: String!, $why: String!) { requestAccess(product: $p, purpose: $why) { id } }"
SR = "public_works.service_requests"


def _auth(server: Server, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


def _gql(server: Server, query: str, variables: dict[str, Any], **kw: Any) -> httpx.Response:
    body = {"query": query, "variables": variables, **kw}
    return server.client.post("/graphql", json=body, headers=_auth(server, "alice"))


def _event(**changes: Any) -> dict[str, Any]:
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "city-etl", "name": "report"},
        "producer": "https://etl.city.example",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    for key, value in changes.items():
        if key == "runId":
            event["run"] = {"runId": value}
        else:
            event[key] = value
    return event


SENDS: dict[str, Callable[[Server], httpx.Response]] = {
    "export path with NUL": lambda s: s.client.get("/exports/a%00b.csv", headers=_auth(s, "alice")),
    "export path of 300 characters": lambda s: s.client.get(
        "/exports/" + "x" * 300 + ".csv", headers=_auth(s, "alice")
    ),
    "lineage(product:) with NUL": lambda s: _gql(s, LINEAGE, {"p": "a\u0000b"}),
    "lineage(product:) of 300 characters": lambda s: _gql(s, LINEAGE, {"p": "x" * 300}),
    "accessLog(product:) with NUL": lambda s: _gql(s, AUDIT, {"p": "a\u0000b"}),
    "readersOfDerived(product:) with NUL": lambda s: _gql(s, READERS, {"p": "a\u0000b"}),
    "operationName with NUL": lambda s: _gql(s, "query A { me { user } }", {}, operationName="A\u0000"),
    "a purpose with NUL": lambda s: _gql(s, REQUEST, {"p": SR, "why": "audit\u0000"}),
    "a product name of 300 characters": lambda s: _gql(s, REQUEST, {"p": "hr." + "x" * 300, "why": "x"}),
    "an eventTime of 56 characters": lambda s: s.client.post(
        "/api/v1/lineage",
        json=_event(eventTime="2026-01-01T00:00:00.123456789012345678901234567890+00:00"),
        headers=_auth(s, "airflow"),
    ),
    "a runId that is a number": lambda s: s.client.post(
        "/api/v1/lineage",
        json=_event(runId=12345678123456781234567812345678),
        headers=_auth(s, "airflow"),
    ),
}


@pytest.mark.parametrize("name", list(SENDS))
def test_a_hostile_value_is_refused_and_recorded_on_postgresql(pg_server: Server, name: str) -> None:
    log = AccessLog.from_settings(pg_server.settings)
    before = log.head()
    response = SENDS[name](pg_server)
    assert response.status_code in (200, 400, 403), response.text
    errors = response.json().get("errors") or [{"extensions": {"code": None}}]
    codes = {e["extensions"]["code"] for e in errors}
    assert codes <= {"FORBIDDEN", "BAD_USER_INPUT"} and codes, response.text
    records = [r for r in log.rows(after_seq=before) if r["request_id"] == response.headers["x-request-id"]]
    assert len(records) == 1, records
    assert "\x00" not in str(records[0]) and len(records[0]["product"] or "") <= 200


def test_a_hostile_request_fails_no_other_request_in_its_group_commit(pg_server: Server) -> None:
    answers: list[tuple[str, int]] = []

    def normal(i: int) -> None:
        answers.append(("normal", _gql(pg_server, f"{{ me {{ u{i}: user }} }}", {}).status_code))

    def hostile(i: int) -> None:
        answers.append(("hostile", _gql(pg_server, LINEAGE, {"p": f"x\u0000{i}"}).status_code))

    threads = [threading.Thread(target=hostile if i % 2 else normal, args=(i,)) for i in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == sorted([("normal", 200)] * 30 + [("hostile", 200)] * 30)
