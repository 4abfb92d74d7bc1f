"""Keyset cursors through real HTTP: every order (ties, NULLs, both directions) pages through every
row exactly once, in the same order as one big page; cursors are bound to their order."""

from __future__ import annotations

import base64
import json
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
