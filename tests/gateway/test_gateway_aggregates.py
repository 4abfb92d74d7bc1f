"""Aggregates through real HTTP: grouped metrics, date buckets, row scope, masked columns refused."""

from __future__ import annotations

SR = "public_works.service_requests"


def agg(server, user: str, args: str, groups: str) -> dict:
    args = f"({args})" if args else ""
    return server.gql(
        f"{{ publicWorks {{ serviceRequestsAggregate{args} {{ groups {{ {groups} }} hasMoreGroups "
        "snapshot { id } } } }",
        user,
    )


def groups(body: dict) -> list[dict]:
    assert "errors" not in body, body
    return body["data"]["publicWorks"]["serviceRequestsAggregate"]["groups"]


def test_grouped_metrics(server) -> None:
    result = groups(
        agg(
            server,
            "alice",
            "groupBy: [CATEGORY]",
            "key { category } count avg(column: RESPONSE_HOURS) total: sum(column: PRIORITY) "
            "first: min(column: REQUEST_ID) last: max(column: REQUEST_ID) d: countDistinct(column: DISTRICT)",
        )
    )
    by_category = {g["key"]["category"]: g for g in result}
    assert set(by_category) == {"pothole", "graffiti", "streetlight"}
    pothole = by_category["pothole"]  # i % 3 == 0: i = 0, 3, ..., 87
    assert pothole["count"] == 30
    assert pothole["avg"] == sum(i / 2 for i in range(0, 90, 3)) / 30
    assert pothole["total"] == sum(i % 4 + 1 for i in range(0, 90, 3))
    assert pothole["first"] == "SR-0000" and pothole["last"] == "SR-0087"
    assert pothole["d"] == 3  # i % 3 == 0 only ever lands in D1, D4, D7


def test_aggregates_respect_row_scope(server) -> None:
    body = agg(server, "dana", "groupBy: [DISTRICT]", "key { district } count")
    assert groups(body) == [{"key": {"district": "D3"}, "count": 10}]
    assert body["extensions"]["governance"][SR]["rowFilter"] == {"column": "district", "values": ["D3"]}
    total = groups(agg(server, "dana", "", "count"))
    assert total == [{"count": 10}]


def test_date_buckets_and_filters(server) -> None:
    result = groups(
        agg(
            server,
            "alice",
            "bucket: {column: CLOSED_ON, unit: MONTH}, where: {closedOn: {isNull: false}}",
            "key { bucket } count",
        )
    )
    counts = {g["key"]["bucket"][:7]: g["count"] for g in result}
    assert sum(counts.values()) == 72  # 90 rows, every fifth not closed
    assert set(counts) == {"2026-02", "2026-03", "2026-04", "2026-05"}


def test_masked_columns_cannot_be_aggregated(server) -> None:
    for args, fields in [
        ("groupBy: [REQUESTER_NAME]", "count"),
        ("", "countDistinct(column: REQUESTER_EMAIL)"),
        ("bucket: {column: CREATED_AT, unit: DAY}", "avg(column: LATITUDE)"),
    ]:
        body = agg(server, "bob", args, fields)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert body["data"]["publicWorks"]["serviceRequestsAggregate"] is None
    assert groups(agg(server, "alice", "groupBy: [REQUESTER_NAME], first: 1", "count"))  # owner may


def test_bad_aggregate_arguments(server) -> None:
    body = agg(server, "alice", "", "sum(column: CATEGORY)")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = agg(server, "alice", "bucket: {column: CATEGORY, unit: DAY}", "count")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = agg(server, "alice", "first: 1000000", "count")
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
