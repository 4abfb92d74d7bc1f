"""Governed reads through real HTTP: masks, row scope, filters, ordering, pagination, denials."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pg import on_both_backends

# Every test here runs on SQLite and on PostgreSQL (tests/pg.py).
server = pytest.fixture(on_both_backends("server"), name="server")

SR = "public_works.service_requests"
PII_FIELDS = "requesterName requesterEmail requesterPhone address latitude"


def rows_query(args: str = "", fields: str = f"requestId district category priority {PII_FIELDS}") -> str:
    args = f"({args})" if args else ""
    return (
        f"{{ publicWorks {{ serviceRequests{args} {{ totalCount nodes {{ {fields} }} "
        "pageInfo { hasNextPage endCursor } snapshot { id publishedAt } } } }"
    )


def conn(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    return body["data"]["publicWorks"]["serviceRequests"]


def test_owner_sees_unmasked_rows(server) -> None:
    body = server.gql(rows_query('where: {requestId: {eq: "SR-0007"}}'), "alice")
    node = conn(body)["nodes"][0]
    assert node["requesterName"] == "Person 7"
    assert node["requesterEmail"] == "person7@mail.example"
    assert node["requesterPhone"] == "+1-555-0107"
    assert node["address"] == "7 Main Street"
    assert node["latitude"] == pytest.approx(40.719776)
    governance = body["extensions"]["governance"][SR]
    assert governance["maskedColumns"] == {}
    assert governance["rowFilter"] is None
    assert governance["snapshotId"] == conn(body)["snapshot"]["id"]


@pytest.mark.parametrize("user", ["bob", "mallory"])
def test_pii_is_masked_with_the_same_types(server, user: str) -> None:
    body = server.gql(rows_query('where: {requestId: {in: ["SR-0007", "SR-0016"]}}'), user)
    nodes = conn(body)["nodes"]
    assert len(nodes) == 2
    for node in nodes:
        assert isinstance(node["requesterName"], str) and node["requesterName"].startswith("p_")
        assert "Person" not in node["requesterName"]
        assert node["requesterEmail"].startswith("p_")
        assert node["requesterPhone"] is None  # redact
        assert node["address"] == "***reet"  # partial: last 4 characters
        assert isinstance(node["latitude"], float) and node["latitude"] == round(node["latitude"], 2)
    masked = body["extensions"]["governance"][SR]["maskedColumns"]
    assert masked == {
        "address": "partial",
        "latitude": "generalize",
        "requester_email": "hash",
        "requester_name": "hash",
        "requester_phone": "redact",
    }


def test_hash_pseudonyms_are_stable_across_requests_and_users(server) -> None:
    q = rows_query('where: {requestId: {eq: "SR-0003"}}', "requesterName")
    first = conn(server.gql(q, "bob"))["nodes"][0]["requesterName"]
    assert conn(server.gql(q, "bob"))["nodes"][0]["requesterName"] == first
    assert conn(server.gql(q, "mallory"))["nodes"][0]["requesterName"] == first


def test_scoped_supervisor_sees_only_her_district(server) -> None:
    body = server.gql(rows_query("first: 50"), "dana")
    page = conn(body)
    assert page["totalCount"] == 10  # 90 rows over D1..D9
    assert {n["district"] for n in page["nodes"]} == {"D3"}
    assert body["extensions"]["governance"][SR]["rowFilter"] == {"column": "district", "values": ["D3"]}
    other = conn(server.gql(rows_query('where: {district: {eq: "D4"}}'), "dana"))
    assert other["totalCount"] == 0 and other["nodes"] == []


def test_filters_and_ordering(server) -> None:
    q = rows_query(
        'where: {category: {eq: "pothole"}, priority: {gte: 2}, district: {in: ["D1", "D4", "D7"]}}, '
        "orderBy: [{priority: DESC}, {requestId: ASC}], first: 100",
        "requestId district category priority",
    )
    nodes = conn(server.gql(q, "alice"))["nodes"]
    assert nodes, "expected some rows"
    assert all(n["category"] == "pothole" and n["priority"] >= 2 for n in nodes)
    assert all(n["district"] in {"D1", "D4", "D7"} for n in nodes)
    keys = [(-n["priority"], n["requestId"]) for n in nodes]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ('{requestId: {ne: "SR-0000"}}', 89),
        ('{requestId: {startsWith: "SR-001"}}', 10),
        ('{requestId: {contains: "08"}}', 11),
        ("{priority: {between: [2, 3]}}", 45),
        ("{priority: {lt: 2}}", 23),
        ("{closedOn: {isNull: true}}", 18),
        ('{closedOn: {gte: "2026-04-01"}}', 25),
        ('{createdAt: {lt: "2026-01-01T10:00:00"}}', 10),
        ("{responseHours: {lte: 1.0}}", 3),
        ('{or: [{district: {eq: "D1"}}, {district: {eq: "D2"}}]}', 20),
        ('{not: {district: {eq: "D1"}}}', 80),
        ('{and: [{category: {eq: "pothole"}}, {district: {eq: "D1"}}]}', 10),
        ("{requestId: {in: []}}", 0),
    ],
)
def test_where_operators(server, where: str, expected: int) -> None:
    page = conn(server.gql(rows_query(f"where: {where}", "requestId"), "alice"))
    assert page["totalCount"] == expected


def test_cursor_pagination_walks_every_row_once(server) -> None:
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        args = "first: 25, orderBy: [{createdAt: DESC}]" + (f', after: "{after}"' if after else "")
        page = conn(server.gql(rows_query(args, "requestId"), "alice"))
        seen += [n["requestId"] for n in page["nodes"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 4
    assert len(seen) == len(set(seen)) == 90
    assert seen[0] == "SR-0089"


@pytest.mark.parametrize(
    "args", ['where: {requesterName: {eq: "Person 1"}}', "orderBy: [{requesterEmail: ASC}]"]
)
def test_filter_or_sort_on_a_masked_column_is_refused(server, args: str) -> None:
    body = server.gql(rows_query(args, "requestId"), "bob")
    assert body["data"]["publicWorks"]["serviceRequests"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "masked" in body["errors"][0]["message"]


def test_owner_may_filter_on_pii(server) -> None:
    page = conn(server.gql(rows_query('where: {requesterName: {eq: "Person 1"}}', "requestId"), "alice"))
    assert [n["requestId"] for n in page["nodes"]] == ["SR-0001"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ("first: 100000", "LIMIT_EXCEEDED"),
        ("first: -1", "BAD_USER_INPUT"),
        ('after: "garbage!!"', "BAD_USER_INPUT"),
        ("orderBy: [{priority: ASC, district: ASC}]", "BAD_USER_INPUT"),
    ],
)
def test_bad_arguments(server, args: str, code: str) -> None:
    body = server.gql(rows_query(args, "requestId"), "alice")
    assert body["errors"][0]["extensions"]["code"] == code


def test_undiscoverable_product_is_forbidden_without_revealing_it(server) -> None:
    # A restricted product is not in mallory's schema at all: it fails like a field that never
    # existed (more in test_gateway_visibility.py).
    body = server.gql("{ hr { salaries { nodes { salary } } } }", "mallory")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"] == "Cannot query field 'hr' on type 'Query'."
    assert body["data"] is None


def test_confidential_product_is_discoverable_but_its_rows_are_forbidden(server) -> None:
    body = server.gql("{ finance { vendorPayments { nodes { vendor } } } }", "mallory")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "confidential" in error["message"]
    assert body["data"]["finance"]["vendorPayments"] is None


def test_auditor_discovers_but_reads_no_rows(server) -> None:
    body = server.gql(rows_query("", "requestId"), "carol")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["message"] != "No such product is available to you."  # discoverable: a real reason


def test_unknown_field_gives_no_suggestions(server) -> None:
    body = server.gql("{ publicWorks { serviceRequest { totalCount } } }", "alice")
    message = body["errors"][0]["message"]
    assert "Did you mean" not in message
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_public_product_for_everyone(server) -> None:
    body = server.gql(
        "{ environment { airQuality(orderBy: [{pm25: DESC}], first: 2) "
        "{ totalCount nodes { station pm25 } } } }",
        "mallory",
    )
    page = body["data"]["environment"]["airQuality"]
    assert page["totalCount"] == 10
    assert [n["pm25"] for n in page["nodes"]] == [13.5, 12.0]


def test_row_completion_handles_aliases_typename_fragments_and_directives(server) -> None:
    query = """
    query($withName: Boolean!) { publicWorks { serviceRequests(where: {requestId: {eq: "SR-0005"}}) {
      nodes { __typename id: requestId ...F when: createdAt name: requesterName @include(if: $withName) }
    } } }
    fragment F on PublicWorksServiceRequestsRow { district closedOn latitude }
    """
    for with_name in (True, False):
        node = conn(server.gql(query, "alice", {"withName": with_name}))["nodes"][0]
        expected = {
            "__typename": "PublicWorksServiceRequestsRow",
            "id": "SR-0005",
            "district": "D6",
            "closedOn": None,  # every fifth request is still open
            "latitude": pytest.approx(40.717776),
            "when": "2026-01-01T05:00:00",
        }
        if with_name:
            expected["name"] = "Person 5"
        assert node == expected
