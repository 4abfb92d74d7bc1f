"""Every malformed request gets a 4xx with a code and a message, and exactly one access-log record
(issue 11): bodies (nesting, encoding, size, JSON), methods, export parameters typed like GraphQL's
(validated by the same code), a lineage event nested 5,000 deep, a subject outside the directory,
a truncated snapshot read through an export, and an unexpected exception (500 with the request id).
Real uvicorn HTTP; each refusal is matched to its record by the `X-Request-Id` header."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.app import MAX_BODY_BYTES, governed
from lineage.receiver import MAX_EVENT_BYTES
from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine
from tests.gateway.conftest import SERVICE_REQUESTS, SERVICE_REQUESTS_SQL, Server, publish

SR_EXPORT = "/exports/public_works.service_requests.csv"
JSON = {"content-type": "application/json"}


def _auth(server: Server, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user)}"}


def refused_once(server: Server, send: Any) -> tuple[httpx.Response, dict[str, Any]]:
    """Send a request; it must be refused with a coded error and leave exactly one record."""
    log = AccessLog.from_settings(server.settings)
    before = log.head()
    response = send()
    rows = list(log.rows(after_seq=before))
    assert len(rows) == 1, rows
    record = rows[0]
    assert 400 <= response.status_code < 600 and record["status"] == response.status_code
    assert record["request_id"] == response.headers["x-request-id"]
    error = response.json()["errors"][0]
    assert error["message"] and error["extensions"]["code"] == record["error_code"]
    return response, record


# -- bodies ----------------------------------------------------------------------------------------

NESTED = b"[" * 20_000 + b"]" * 20_000  # 40 KB


def test_nested_arrays_without_a_token_are_refused_unparsed(server: Server) -> None:
    response, record = refused_once(
        server, lambda: server.client.post("/graphql", content=NESTED, headers=JSON)
    )
    assert response.status_code == 401 and record["error_code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ["/graphql", "/api/v1/lineage"])
@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (NESTED, 400, "LIMIT_EXCEEDED", "nested more than 64 levels"),
        (b'{"query": "{ me { user } }\xff"}', 400, "BAD_USER_INPUT", "not valid UTF-8"),
        (b'{"query": ', 400, "BAD_USER_INPUT", "not valid JSON"),
        (None, 413, "LIMIT_EXCEEDED", "larger than"),  # just over the route's limit
    ],
    ids=["nested", "utf8", "json", "size"],
)
def test_a_malformed_body_is_a_4xx_and_one_record(
    server: Server, route: str, body: bytes, status: int, code: str, says: str
) -> None:
    user = "airflow" if route.startswith("/api") else "alice"
    if body is None:
        body = (
            b'{"query": "' + b"x" * (MAX_EVENT_BYTES if route.startswith("/api") else MAX_BODY_BYTES) + b'"}'
        )
    headers = {**JSON, **_auth(server, user)}
    response, record = refused_once(server, lambda: server.client.post(route, content=body, headers=headers))
    assert (response.status_code, record["error_code"]) == (status, code)
    assert says in response.json()["errors"][0]["message"] and record["subject"] == user


@pytest.mark.parametrize("route", ["/graphql", "/api/v1/lineage"])
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'"{ me { user } }"', "not a string"),
        (b"null", "not null"),
        (b"5", "not a number"),
        (b"true", "not a boolean"),
        (b'[{"query": "{ me { user } }"}]', "not an array"),
        (b"", "empty"),
        (b'{"query": "{ me { user } }\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"query": "{ me { user } }", "variables": {"\\udc00": 1}}', "lone UTF-16 surrogate"),
    ],
    ids=["string", "null", "number", "boolean", "array", "empty", "surrogate", "surrogate-key"],
)
def test_a_body_that_is_no_json_object_is_a_400_and_one_record(
    server: Server, route: str, body: bytes, says: str
) -> None:
    """Break 11: a JSON string or `null` as the /graphql body and a lone surrogate escape (valid JSON
    to Python, no UTF-8 encoder takes it) were HTTP 500."""
    user = "airflow" if route.startswith("/api") else "alice"
    headers = {**JSON, **_auth(server, user)}
    response, record = refused_once(server, lambda: server.client.post(route, content=body, headers=headers))
    assert (response.status_code, record["error_code"]) == (400, "BAD_USER_INPUT")
    assert says in response.json()["errors"][0]["message"] and record["subject"] == user


def test_two_authorization_headers_are_a_400_and_one_record(server: Server) -> None:
    """Break 11: with two Authorization headers the first one won (mallory's here), whatever a proxy
    in front of the gateway authenticated."""
    headers = [
        ("content-type", "application/json"),
        ("authorization", f"Bearer {server.token('mallory')}"),
        ("authorization", f"Bearer {server.token('alice')}"),
    ]
    response, record = refused_once(
        server,
        lambda: server.client.post("/graphql", content=b'{"query": "{ me { user } }"}', headers=headers),
    )
    assert (response.status_code, record["error_code"]) == (400, "BAD_USER_INPUT")
    assert record["subject"] is None


def test_a_lineage_event_nested_5000_deep_is_refused(server: Server) -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    event = (
        '{"eventType": "COMPLETE", "eventTime": "2026-01-01T00:00:00Z", "producer": "p", "schemaURL": "s", '
        '"run": {"runId": "0b8f2b4c-9b8a-4a4e-8f7e-2d2f8e6f6a11", "facets": {"x": ' + deep + "}}, "
        '"job": {"namespace": "city-etl", "name": "deep"}}'
    )
    headers = {**JSON, **_auth(server, "airflow")}
    response, record = refused_once(
        server, lambda: server.client.post("/api/v1/lineage", content=event.encode(), headers=headers)
    )
    assert response.status_code == 400 and record["error_code"] == "LIMIT_EXCEEDED"
    assert record["action"] == "lineage_ingest"


@pytest.mark.parametrize(
    ("method", "route"), [("GET", "/api/v1/lineage"), ("PUT", "/graphql"), ("POST", SR_EXPORT)]
)
def test_a_wrong_method_is_405_and_one_record(server: Server, method: str, route: str) -> None:
    headers = _auth(server, "alice")
    response, record = refused_once(server, lambda: server.client.request(method, route, headers=headers))
    assert response.status_code == 405 and record["error_code"] == "BAD_USER_INPUT"
    assert response.headers["allow"] in ("GET", "POST")


@pytest.mark.parametrize(
    "send",
    [
        lambda s, h: s.client.post("/graphql", json={"query": "{ me { user } }"}, headers=h),
        lambda s, h: s.client.get(SR_EXPORT, headers=h),
        lambda s, h: s.client.post("/api/v1/lineage", json={}, headers=h),
    ],
    ids=["graphql", "export", "lineage"],
)
def test_a_valid_signature_for_a_stranger_is_401(server: Server, send: Any) -> None:
    headers = _auth(server, "nobody")  # signed with the real key; not in the directory
    response, record = refused_once(server, lambda: send(server, headers))
    assert response.status_code == 401 and record["error_code"] == "UNAUTHENTICATED"
    assert record["subject"] == "nobody" and record["decision"] == "deny"
    assert "directory" in response.json()["errors"][0]["message"]


# -- export parameters: typed like GraphQL's `where`, checked by the same code ---------------------

WRONG_WHERE = [
    ({"district": {"in": 5}}, "String cannot represent a non string value: 5"),
    ({"district": {"eq": {"a": 1}}}, "String cannot represent a non string value"),
    ({"priority": {"eq": "x"}}, "Int cannot represent non-integer value: 'x'"),
    ({"priority": {"between": [1, "2"]}}, "Int cannot represent non-integer value: '2'"),
    ({"district": {"like": "D%"}}, "Field 'like' is not defined"),
    ({"salary": {"eq": 1}}, "Field 'salary' is not defined"),
    ({"and": {"district": {"eq": 3}}}, "String cannot represent a non string value: 3"),
    ("D3", "Expected type 'PublicWorksServiceRequestsWhere' to be a mapping"),
]


@pytest.mark.parametrize(("where", "says"), WRONG_WHERE)
def test_a_wrongly_typed_where_is_refused_as_graphql_refuses_it(
    server: Server, where: Any, says: str
) -> None:
    headers = _auth(server, "alice")
    params = {"where": json.dumps(where)}
    response, record = refused_once(
        server, lambda: server.client.get(SR_EXPORT, params=params, headers=headers)
    )
    assert response.status_code == 400 and record["error_code"] == "BAD_USER_INPUT"
    assert record["action"] == "export" and record["product"] == SERVICE_REQUESTS.name
    assert says in response.json()["errors"][0]["message"]
    # the same value as a GraphQL variable gets the same complaint
    query = (
        "query($w: PublicWorksServiceRequestsWhere) "
        "{ publicWorks { serviceRequests(where: $w) { totalCount } } }"
    )
    body = server.gql(query, "alice", {"w": where})
    assert says in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("params", "status", "code", "says"),
    [
        ({"where": "{nope"}, 400, "BAD_USER_INPUT", "not valid JSON"),
        ({"where": '{"not":' * 40 + "{}" + "}" * 40}, 400, "LIMIT_EXCEEDED", "nested more than"),
        ({"orderBy": json.dumps([{"district": "UP"}])}, 400, "BAD_USER_INPUT", "SortDirection"),
        (
            {"orderBy": json.dumps([{"district": "ASC", "category": "ASC"}])},
            400,
            "BAD_USER_INPUT",
            "exactly one",
        ),
        ({"limit": "ten"}, 400, "BAD_USER_INPUT", "whole number"),
        ({"limit": "9999999999"}, 400, "LIMIT_EXCEEDED", "at most"),
        ({"limit": "\u00b2"}, 400, "BAD_USER_INPUT", "whole number"),  # isdigit(), int() raised
        ({"limit": "\u0663"}, 400, "BAD_USER_INPUT", "whole number"),  # Arabic-Indic 3
        ({"limit": "9" * 5000}, 400, "LIMIT_EXCEEDED", "at most"),  # int() raised past 4,300 digits
        ({"where": '{"district": {"eq": "\\ud800"}}'}, 400, "BAD_USER_INPUT", "lone UTF-16 surrogate"),
        ({"asOf": "yesterday"}, 400, "BAD_USER_INPUT", "asOf"),
        ({"wher": "{}"}, 400, "BAD_USER_INPUT", "Unknown parameter"),
    ],
)
def test_other_bad_export_parameters_are_refused(
    server: Server, params: dict[str, str], status: int, code: str, says: str
) -> None:
    headers = _auth(server, "alice")
    response, record = refused_once(
        server, lambda: server.client.get(SR_EXPORT, params=params, headers=headers)
    )
    assert (response.status_code, record["error_code"]) == (status, code)
    assert says in response.json()["errors"][0]["message"]


def _export_ids(server: Server, user: str, **params: str) -> list[str]:
    response = server.client.get(SR_EXPORT, params=params, headers=_auth(server, user))
    assert response.status_code == 200, response.text
    return [row["request_id"] for row in csv.DictReader(io.StringIO(response.text))]


def test_a_single_value_for_in_is_a_list_of_one(server: Server) -> None:
    ids = _export_ids(server, "alice", where=json.dumps({"district": {"in": "D3"}}))
    assert ids == [f"SR-{i:04d}" for i in range(90) if i % 9 + 1 == 3]  # never split into "D", "3"


def test_an_export_filters_and_sorts_exactly_as_graphql(server: Server) -> None:
    where = {
        "or": [{"district": {"in": ["D1", "D2"]}}, {"priority": {"gte": 4}}],
        "not": {"category": {"eq": "graffiti"}},
    }
    order = [{"priority": "DESC"}, {"createdAt": "ASC"}]
    query = (
        "query($w: PublicWorksServiceRequestsWhere, $o: [PublicWorksServiceRequestsOrderBy!]) "
        "{ publicWorks { serviceRequests(where: $w, orderBy: $o, first: 1000) { nodes { requestId } } } }"
    )
    body = server.gql(query, "alice", {"w": where, "o": order})
    expected = [n["requestId"] for n in body["data"]["publicWorks"]["serviceRequests"]["nodes"]]
    assert (
        expected
        and _export_ids(server, "alice", where=json.dumps(where), orderBy=json.dumps(order)) == expected
    )


# -- faults behind the request: a truncated snapshot, an unexpected exception --------------------


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("fault_home")
    settings = Settings.for_home(home)
    settings.ensure_dirs()
    publish(settings, SERVICE_REQUESTS, SERVICE_REQUESTS_SQL)
    server = Server(settings)

    async def boom(request: Request) -> Response:
        raise ZeroDivisionError("a handler bug")

    # first: the portal, mounted last at /, would take any path the routes before it do not
    server.server.config.app.router.routes.insert(
        0, Route("/boom", governed(boom, "query", ("POST",), 1024, json_body=True))
    )
    server.start()
    yield server
    server.stop()
    dispose_all()


def test_a_truncated_snapshot_through_an_export_is_a_coded_error(fault_server: Server) -> None:
    settings = fault_server.settings
    entry = Catalog(get_engine(settings.metadata_url), settings.home).entry(SERVICE_REQUESTS.name)
    assert entry is not None and entry.current is not None
    path = Path(entry.current.path)  # the catalog makes the home-relative path absolute
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a disk that filled up, a copy cut short
    headers = _auth(fault_server, "alice")
    response, record = refused_once(fault_server, lambda: fault_server.client.get(SR_EXPORT, headers=headers))
    # never a bare 500: UNAVAILABLE where the snapshot's checksum is checked before it is served,
    # else (as a damaged snapshot read through GraphQL) an internal error carrying the request id
    code = record["error_code"]
    assert (response.status_code, code) in ((503, "UNAVAILABLE"), (500, "INTERNAL_SERVER_ERROR"))
    if code == "INTERNAL_SERVER_ERROR":
        assert response.json()["errors"][0]["extensions"]["requestId"] == record["request_id"]
    assert record["product"] == SERVICE_REQUESTS.name and record["action"] == "export"
    assert str(path) not in response.text and "magic" not in response.text


def test_an_unexpected_exception_is_500_with_the_request_id(
    fault_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**JSON, **_auth(fault_server, "alice")}
    with caplog.at_level(logging.ERROR, logger="gateway.pipeline"):
        response, record = refused_once(
            fault_server, lambda: fault_server.client.post("/boom", json={}, headers=headers)
        )
    error = response.json()["errors"][0]
    assert response.status_code == 500 and error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"] == record["request_id"] == response.headers["x-request-id"]
    assert "a handler bug" not in response.text and "ZeroDivisionError" not in response.text
    logged = [r for r in caplog.records if record["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is ZeroDivisionError
