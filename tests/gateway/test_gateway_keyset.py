"""Keyset cursors through real HTTP: every order (ties, NULLs, both directions) pages through every
row exactly once, in the same order as one big page; cursors are bound to their order."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pytest

FIELDS = "requestId priority closedOn responseHours createdAt district"


def page(server, args: str, user: str = "alice") -> dict[str, Any]:
    body = server.gql(
        f"{{ publicWorks {{ serviceRequests({args}) {{ nodes {{ {FIELDS} }} "
        "pageInfo { hasNextPage endCursor } } } }",
        user,
    )
    assert "errors" not in body, body
    return body["data"]["publicWorks"]["serviceRequests"]


def walk(server, order: str, sizes: list[int], user: str = "alice") -> list[str]:
    seen: list[str] = []
    after = None
    for i in range(200):
        args = f"first: {sizes[i % len(sizes)]}, orderBy: {order}"
        if after:
            args += f', after: "{after}"'
        got = page(server, args, user)
        seen += [n["requestId"] for n in got["nodes"]]
        if not got["pageInfo"]["hasNextPage"]:
            return seen
        after = got["pageInfo"]["endCursor"]
    raise AssertionError("pagination did not end")


def decode(cursor: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "order",
    [
        "[{createdAt: DESC}]",
        "[{priority: ASC}]",  # many ties: the key breaks them
        "[{closedOn: DESC}]",  # NULLs (last) in a descending order
        "[{closedOn: ASC}, {priority: DESC}]",
        "[{responseHours: DESC}]",
        "[{district: ASC}, {createdAt: ASC}]",
    ],
)
def test_keyset_pages_match_one_big_page(server, order: str) -> None:
    whole = [n["requestId"] for n in page(server, f"first: 1000, orderBy: {order}")["nodes"]]
    assert len(whole) == 90
    assert walk(server, order, [7, 13, 25]) == whole  # page sizes may change between pages


def test_keyset_under_row_scope(server) -> None:
    whole = [
        n["requestId"] for n in page(server, "first: 1000, orderBy: [{priority: DESC}]", "dana")["nodes"]
    ]
    assert 0 < len(whole) < 90
    assert walk(server, "[{priority: DESC}]", [3], user="dana") == whole


def test_cursor_carries_snapshot_and_last_sort_values(server) -> None:
    got = page(server, "first: 5, orderBy: [{priority: ASC}]")
    cursor = decode(got["pageInfo"]["endCursor"])
    last = got["nodes"][-1]
    assert cursor["k"] == [last["priority"], last["requestId"]]
    assert cursor["s"] and cursor["h"] and "o" not in cursor


def test_cursor_from_another_order_is_refused(server) -> None:
    cursor = page(server, "first: 5, orderBy: [{priority: ASC}]")["pageInfo"]["endCursor"]
    body = server.gql(
        f'{{ publicWorks {{ serviceRequests(first: 5, orderBy: [{{priority: DESC}}], after: "{cursor}") '
        "{ nodes { requestId } } } }",
        "alice",
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_tampered_keyset_cursor_is_bad_input(server) -> None:
    cursor = decode(page(server, "first: 5, orderBy: [{createdAt: DESC}]")["pageInfo"]["endCursor"])
    for keys in ([{"x": 1}, "SR-0001"], ["not a time", "SR-0001"], ["2026-01-01T00:00:00"]):
        bad = encode({**cursor, "k": keys})
        body = server.gql(
            f'{{ publicWorks {{ serviceRequests(first: 5, orderBy: [{{createdAt: DESC}}], after: "{bad}") '
            "{ nodes { requestId } } } }",
            "alice",
        )
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", keys


def test_offset_cursor_still_read(server) -> None:
    whole = [n["requestId"] for n in page(server, "first: 1000")["nodes"]]
    snapshot = decode(page(server, "first: 1")["pageInfo"]["endCursor"])["s"]
    legacy = encode({"s": snapshot, "o": 10})
    got = page(server, f'first: 5, after: "{legacy}"')
    assert [n["requestId"] for n in got["nodes"]] == whole[10:15]


def test_scoped_newest_first_pages_list_the_district_newest_first(server) -> None:
    """The snapshot is stored by (district, createdAt DESC, key): dana's newest-first pages are
    read in that order without ORDER BY (`PageQuery.presorted`), and must still be exactly her
    districts' rows, newest first, as sorting everyone's rows says."""
    everything = page(server, "first: 1000")["nodes"]
    districts = {n["district"] for n in page(server, "first: 1000", "dana")["nodes"]}
    mine = [n for n in everything if n["district"] in districts]
    expected = [n["requestId"] for n in sorted(mine, key=lambda n: n["createdAt"], reverse=True)]
    assert 0 < len(expected) < 90
    for sizes in ([1000], [4], [3, 11]):
        assert walk(server, "[{createdAt: DESC}]", sizes, user="dana") == expected


def _after(server, order: str, cursor: dict[str, Any]) -> Any:
    query = (
        f'{{ publicWorks {{ serviceRequests(first: 5, orderBy: {order}, after: "{encode(cursor)}") '
        f"{{ nodes {{ {FIELDS} }} }} }} }}"
    )
    return server.post(query, "alice")


def test_a_timestamp_cursor_carries_duckdbs_text_and_old_cursors_still_page(server) -> None:
    """Date and timestamp keys travel as DuckDB's text (version 2: 'infinity' stays 'infinity');
    a cursor issued before (no version, Python's ISO text) resumes at the same row."""
    order = "[{createdAt: DESC}, {closedOn: ASC}]"
    got = page(server, f"first: 7, orderBy: {order}")
    cursor, last = decode(got["pageInfo"]["endCursor"]), got["nodes"][-1]
    assert cursor["v"] == 2 and " " in cursor["k"][0]  # DuckDB's form, not Python's ISO 'T'
    assert datetime.fromisoformat(cursor["k"][0]) == datetime.fromisoformat(last["createdAt"])
    assert cursor["k"][1] == last["closedOn"]  # None or 'YYYY-MM-DD'
    following = page(server, f'first: 5, orderBy: {order}, after: "{encode(cursor)}"')["nodes"]
    old = {key: value for key, value in cursor.items() if key != "v"}
    old["k"] = [datetime.fromisoformat(cursor["k"][0]).isoformat(), *cursor["k"][1:]]
    response = _after(server, order, old)
    assert (
        response.status_code == 200
        and response.json()["data"]["publicWorks"]["serviceRequests"]["nodes"] == following
    )


@pytest.mark.parametrize(
    ("version", "text", "reason"),
    [
        (2, "2026-02-30 00:00:00", "Invalid cursor"),  # no such day: DuckDB would fail the cast
        (2, "2026-01-01T00:00:00", "Invalid cursor"),  # Python's form in a version 2 cursor
        (1, "9999-12-31T23:59:59.999999", "infinity"),  # an old cursor that may have meant infinity
    ],
)
def test_a_timestamp_cursor_that_cannot_be_resumed_is_bad_input(
    server, version: int, text: str, reason: str
) -> None:
    """The field is refused with BAD_USER_INPUT and why (a GraphQL field error: HTTP 200, as every
    refused field; never an internal error, never a guess at where to resume)."""
    order = "[{createdAt: DESC}]"
    cursor = decode(page(server, f"first: 5, orderBy: {order}")["pageInfo"]["endCursor"])
    forged = {key: value for key, value in cursor.items() if key != "v"} | {"k": [text, *cursor["k"][1:]]}
    if version != 1:
        forged["v"] = version
    response = _after(server, order, forged)
    error = response.json()["errors"][0]
    assert response.status_code == 200 and error["extensions"]["code"] == "BAD_USER_INPUT", response.text
    assert reason in error["message"] and response.json()["data"]["publicWorks"]["serviceRequests"] is None
