"""Attack review of commits 0c0ec2e and ea6e53b: offset cursors for orders that end in the file row
number, and the micro-optimisations (`too_deep`'s bracket count, `duck.resolved`, `_complete_row`).

Each test is what a hostile reader (forged or replayed cursors, odd bodies) or a careless owner
(marts with infinite or nanosecond values) can do, and asserts what must hold: pages follow each
other without gaps or repeats, a cursor that does not fit the request is a 400, and the fast paths
answer as the slow ones. Real DuckDB over real Parquet files, real HTTP through uvicorn.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway.duck import DuckPool, resolved
from gateway.errors import GovernedError
from gateway.fastrows import FastRowsExecutionContext
from gateway.http_body import too_deep
from gateway.query import Cursor, PageQuery
from graphql import GraphQLString
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import FileOrder, file_order, snapshot_order, write_snapshot

# A keyless product with nothing masked for bob (analyst of transportation): his pages are in
# file order (`file_row_number`), so his cursors are offsets.
STOPS = ProductSpec(
    department="transportation",
    product="stops",
    classification="internal",
    owner="tomas@city.example",
    description="Bus stops.",
    scope_column="district",
    columns=(
        ColumnSpec("stop", "integer", "Stop"),
        ColumnSpec("district", "varchar", "City district"),
        ColumnSpec("name", "varchar", "Name"),
    ),
)
STOPS_SQL = (
    "SELECT CAST(i AS INTEGER) AS stop, 'D' || (i % 3 + 1) AS district, 'Stop ' || i AS name "
    "FROM range(60) t(i)"
)


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return data


def _stops(server: Any, args: str) -> dict[str, Any]:
    page = "nodes { stop } pageInfo { hasNextPage endCursor }"
    query = f"{{ transportation {{ stops({args}) {{ {page} }} }} }}"
    response = server.post(query, "bob")
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    return body


def _page(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    page: dict[str, Any] = body["data"]["transportation"]["stops"]
    return page


@pytest.fixture(scope="module")
def stops(server: Any, gw_settings: Any, publish_product: Any) -> Any:
    publish_product(gw_settings, STOPS, STOPS_SQL)
    for _ in range(50):  # the new product is served within a second
        if "errors" not in _stops(server, "first: 1"):
            return server
        time.sleep(0.1)
    raise AssertionError("the product was not served")


def test_a_keyless_product_pages_by_offset_each_row_once(stops: Any) -> None:
    """Held: bob pages every row 7 at a time: each row once, in one big page's order, offset cursors."""
    whole = [n["stop"] for n in _page(_stops(stops, "first: 1000"))["nodes"]]
    paged: list[int] = []
    after = ""
    while True:
        page = _page(_stops(stops, f"first: 7{after}"))
        paged += [n["stop"] for n in page["nodes"]]
        assert "k" not in _decode(page["pageInfo"]["endCursor"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = f', after: "{page["pageInfo"]["endCursor"]}"'
    assert paged == whole and sorted(paged) == list(range(60))


def test_a_keyset_cursor_issued_before_offset_paging_is_bad_input(stops: Any) -> None:
    """A cursor issued before 0c0ec2e for a keyless order carries a file row number and the order's
    signature (unchanged): it was still obeyed, so anyone could ask "rows after file row N" and learn
    where their rows sit in the file, and the next page's offset cursor counted from that page only
    (rows repeated). It must be a 400 BAD_USER_INPUT."""
    first = _page(_stops(stops, "first: 5"))
    snapshot = _decode(first["pageInfo"]["endCursor"])["s"]
    order = hashlib.sha256(b"file_row_number ASC").hexdigest()[:16]
    old = _encode({"s": snapshot, "k": [4], "h": order})
    body = _stops(stops, f'first: 5, after: "{old}"')
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body


def test_an_offset_cursor_of_another_order_is_bad_input(stops: Any) -> None:
    """A keyset cursor names its order (`h`) and a cursor of another `orderBy` is refused; the offset
    cursors that keyless products now get did not, so a cursor of "newest first" resumed "oldest
    first" silently (rows skipped and repeated). It must be a 400 BAD_USER_INPUT."""
    first = _page(_stops(stops, "first: 5, orderBy: [{stop: DESC}]"))
    after = first["pageInfo"]["endCursor"]
    body = _stops(stops, f'first: 5, after: "{after}"')
    assert body.get("errors"), body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    # ... and the same order resumes (held).
    again = _page(_stops(stops, f'first: 5, orderBy: [{{stop: DESC}}], after: "{after}"'))
    assert [n["stop"] for n in again["nodes"]] == [54, 53, 52, 51, 50]


# -- keyset pages through values with no JSON form ------------------------------------------------


def _snapshot(
    tmp_path: Path, column: ColumnSpec, sql: str, count: int, first: tuple[ColumnSpec, str] | None = None
) -> tuple[ProductSpec, str, FileOrder]:
    """A product keyed by `id` (0..count-1) with `column` holding `sql` (over `i`), and the
    column `first` holding its SQL if given, published."""
    columns = [(column, sql), *([first] if first else [])]
    spec = ProductSpec(
        department="d",
        product="p",
        classification="internal",
        owner="o@x.example",
        description="",
        columns=(ColumnSpec("id", "integer"), *(c for c, _ in columns)),
        key="id",
    )
    with duckdb.connect() as con:
        values = ", ".join(f"{s} AS {c.name}" for c, s in columns)
        select = f"SELECT CAST(i AS INTEGER) AS id, {values} FROM range({count}) t(i)"
        con.execute(f"CREATE TABLE t AS {select}")
        path = str(write_snapshot(con, "t", tmp_path, snapshot_order(spec), unique=("id",)).path)
        return spec, path, file_order(con, path)  # as publish writes it: the key stated unique


def _walk(
    tmp_path: Path,
    column: ColumnSpec,
    sql: str,
    size: int = 3,
    pages: int = 40,
    direction: str = "ASC",
    hot: bool = False,
    count: int = 10,
    zone: str | None = None,
    first: tuple[ColumnSpec, str] | None = None,
) -> list[int]:
    """Every row's `id`, ordered by `column` in `direction`, `size` rows a page, each page after the
    previous page's end cursor (through its JSON text), as `reads.read_page` pages (at most `pages`);
    `hot`: the pages alternate between the snapshot's hot copy and its file; `zone`: pages run in a
    session of that time zone (the pool's configuration is locked), with the file; `first`: a
    column (and its SQL) the rows are ordered by, ascending, before `column`."""
    spec, path, order = _snapshot(tmp_path, column, sql, count, first)
    pool = DuckPool(tmp_path, "key", threads=1)
    session = duckdb.connect() if zone else None
    if session is not None:
        session.execute(f"SET TimeZone = '{zone}'")
    seen: list[int] = []
    cursor: Cursor | None = None
    try:
        sources: tuple[str | None, ...] = (None,)
        if hot:
            deadline = time.monotonic() + 60
            while (table := pool.source(path, Path(path).stat().st_size)) is None:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            sources = (table, None)
        for page in range(pages):
            query = PageQuery(
                spec=spec,
                path=path,
                table=sources[page % len(sources)],
                columns=["id"],
                order_by=[*([(first[0].name, "ASC")] if first else []), (column.name, direction)],
                limit=size,
                offset=cursor.offset if cursor else 0,
                after=cursor,
                with_keys=True,
                file_order=order,
            )
            sql, params = query.page_sql()
            rows = session.execute(sql, params).fetchall() if session else pool.run(sql, params).rows
            seen += [r[0] for r in rows[:size]]
            if len(rows) <= size:
                break
            end = query.end_cursor("s", rows[size - 1][1:], query.offset + size)
            cursor = Cursor.decode(end.encode())
    finally:
        pool.close()
        if session is not None:
            session.close()
    return seen


def test_a_float_order_through_infinity_and_nan_serves_each_row_once(tmp_path: Path) -> None:
    """A double column holding `inf` and `NaN` (no JSON number): a keyset page ending on one fell
    back to an offset cursor counted from that page only, so the next page restarted near the top
    (rows 4..7 served twice). Each row must be served once."""
    sql = "CASE WHEN i >= 8 THEN 'nan'::DOUBLE WHEN i >= 5 THEN 'inf'::DOUBLE ELSE i * 1.0 END"
    assert _walk(tmp_path, ColumnSpec("v", "double"), sql) == list(range(10))


def test_a_timestamp_order_through_infinity_serves_each_row_once(tmp_path: Path) -> None:
    """A timestamp column holding 'infinity' (a careless owner's "open-ended"): the cursor after the
    first infinite row resumed before it (DuckDB hands Python 9999-12-31 23:59:59.999999 for it),
    and that row was served twice. Cursors carry DuckDB's text of such keys (`gateway.timetext`)."""
    sql = "CASE WHEN i >= 8 THEN 'infinity'::TIMESTAMP ELSE TIMESTAMP '2020-01-01' + i * INTERVAL 1 DAY END"
    assert _walk(tmp_path, ColumnSpec("ts", "timestamp"), sql) == list(range(10))


# Rows 0..11 of a date or timestamp column, in sort order: '-infinity' twice, a BC value, the value
# DuckDB hands Python for '-infinity' (0001-01-01), two values a microsecond (or a day) apart, a
# year past 9999, the value Python gets for 'infinity' twice, 'infinity' twice; NULL (last).
_EDGES = {
    "timestamp": (
        "'-infinity'::TIMESTAMP",
        "TIMESTAMP '0044-03-15 (BC) 12:00:00'",
        "TIMESTAMP '0001-01-01 00:00:00'",
        "TIMESTAMP '2020-01-01 00:00:00'",
        "TIMESTAMP '2020-01-01 00:00:00.000001'",
        "TIMESTAMP '9999-12-31 23:59:59.999999'",
        "'infinity'::TIMESTAMP",
    ),
    "date": (
        "'-infinity'::DATE",
        "DATE '0044-03-15 (BC)'",
        "DATE '0001-01-01'",
        "DATE '2020-01-01'",
        "DATE '2020-01-02'",
        "DATE '9999-12-31'",
        "'infinity'::DATE",
    ),
    # Offsets other than the session's: the text names the instant whatever the zone (two local
    # times across New York's spring-forward gap, a microsecond apart as instants).
    "timestamptz": (
        "'-infinity'::TIMESTAMPTZ",
        "TIMESTAMPTZ '0044-03-15 (BC) 12:00:00+00'",
        "TIMESTAMPTZ '0001-01-01 00:00:00+00'",
        "TIMESTAMPTZ '2020-03-08 01:59:59.999999-05'",
        "TIMESTAMPTZ '2020-03-08 03:00:00-04'",
        "TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'",
        "'infinity'::TIMESTAMPTZ",
    ),
}
_EDGE_ROWS = (0, 0, 1, 2, 3, 4, 5, 5, 6, 6, None, None)  # row i holds _EDGES[type][_EDGE_ROWS[i]]


def _edges_sql(data_type: str) -> str:
    values = _EDGES[data_type]
    whens = " ".join(f"WHEN i = {i} THEN {values[v]}" for i, v in enumerate(_EDGE_ROWS) if v is not None)
    return f"CASE {whens} END"


@pytest.mark.parametrize("data_type", sorted(_EDGES))
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
@pytest.mark.parametrize("size", [1, 2, 5])
def test_infinite_and_extreme_dates_and_timestamps_page_each_row_once(
    tmp_path: Path, data_type: str, direction: str, size: int
) -> None:
    """Every page boundary between -infinity, BC, the stand-in values, a year past 9999, a genuine
    9999-12-31 (23:59:59.999999) and infinity, in both directions, NULLs last: each row once, in
    order (ties broken by the key, ascending). A genuine maximum is not taken for infinity."""
    rows = list(range(12))
    ranked = sorted(
        (i for i in rows if _EDGE_ROWS[i] is not None),
        key=lambda i: (_EDGE_ROWS[i] if direction == "ASC" else -(_EDGE_ROWS[i] or 0), i),
    )
    expected = ranked + [i for i in rows if _EDGE_ROWS[i] is None]
    walked = _walk(tmp_path, ColumnSpec("t", data_type), _edges_sql(data_type), size, 40, direction, count=12)
    assert walked == expected


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "Pacific/Kiritimati", "UTC"])
def test_timestamptz_keys_page_alike_in_any_session_zone(tmp_path: Path, zone: str) -> None:
    """The cursor text of a timestamptz names its offset: the two 01:30 of New York's fall-back
    night stay two instants, a microsecond after the first is between them, whatever the zone."""
    sql = (
        "CASE i WHEN 0 THEN TIMESTAMPTZ '2020-11-01 01:30:00-04' "
        "WHEN 1 THEN TIMESTAMPTZ '2020-11-01 01:30:00-05' WHEN 2 THEN 'infinity'::TIMESTAMPTZ "
        "WHEN 3 THEN TIMESTAMPTZ '2020-11-01 05:30:00.000001+00' END"
    )
    for direction, expected in (("ASC", [0, 3, 1, 2]), ("DESC", [2, 1, 3, 0])):
        walked = _walk(tmp_path, ColumnSpec("t", "timestamptz"), sql, 1, 10, direction, count=4, zone=zone)
        assert walked == expected


def test_the_hot_copy_and_the_file_page_infinity_alike(tmp_path: Path) -> None:
    """Pages alternating between the hot copy and the file: the same cursor text resumes both."""
    expected = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert (
        _walk(tmp_path, ColumnSpec("t", "timestamp"), _edges_sql("timestamp"), 2, hot=True, count=12)
        == expected
    )


def _cursor_page(tmp_path: Path, data_type: str, keys: list[Any], version: int = 2) -> list[int]:
    """The ids of the page after a cursor holding `keys` for the `_EDGES` order by `t` ascending."""
    spec, path, order = _snapshot(tmp_path, ColumnSpec("t", data_type), _edges_sql(data_type), 12)
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        probe = PageQuery(spec=spec, path=path, columns=["id"], order_by=[("t", "ASC")], file_order=order)
        cursor = Cursor("s", keys=tuple(keys), order=probe.order_signature(), version=version)
        query = dataclasses.replace(probe, after=cursor, limit=20)
        return [r[0] for r in pool.run(*query.page_sql()).rows]
    finally:
        pool.close()


@pytest.mark.parametrize(
    "text",
    [
        "nonsense",
        "2020-02-30 00:00:00",  # no such day
        "2021-02-29 00:00:00",  # not a leap year
        "2020-01-01 24:00:00",  # DuckDB reads it as the next day; never its own text
        "2020-01-01 00:00:60",
        "2020-01-01T00:00:00",  # Python's form, in a version 2 cursor
        "2020-01-01 00:00:00+05",  # an offset in a TIMESTAMP (DuckDB would drop it)
        "2020-1-01 00:00:00",
        "294247-01-10 04:00:54.775807",  # past DuckDB's last timestamp
        "0000-01-01 00:00:00",
        "2020-01-01 00:00:00.1234567",
        "infinity'::TIMESTAMP --",
        "Infinity",
        "\u0662\u0660\u0662\u0660-01-01 00:00:00",  # Arabic-Indic digits: `\d` would take them
        17,
    ],
)
def test_a_forged_timestamp_text_in_a_cursor_is_bad_input(tmp_path: Path, text: Any) -> None:
    """A cursor is no secret: a key that is no text DuckDB writes for the column's type is refused
    before any SQL runs (a 400), never a conversion error inside DuckDB (a 500)."""
    with pytest.raises(GovernedError) as refused:
        _cursor_page(tmp_path, "timestamp", [text, 3])
    assert refused.value.code == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("data_type", "key", "expected"),
    [
        ("timestamp", "2020-01-01T00:00:00", [4, 5, 6, 7, 8, 9, 10, 11]),
        ("timestamp", "2020-01-01T00:00:00.000001", [5, 6, 7, 8, 9, 10, 11]),
        ("date", "2020-01-01", [4, 5, 6, 7, 8, 9, 10, 11]),
        ("timestamptz", "2020-03-08T06:59:59.999999+00:00", [4, 5, 6, 7, 8, 9, 10, 11]),
    ],
)
def test_a_cursor_issued_before_text_keys_still_pages(
    tmp_path: Path, data_type: str, key: str, expected: list[int]
) -> None:
    """A keyset cursor issued before this change (version 1: Python's ISO text) resumes where it
    ended, unless its value is one DuckDB also hands Python for an infinity (next test)."""
    assert _cursor_page(tmp_path, data_type, [key, 3], version=1) == expected


@pytest.mark.parametrize(
    ("data_type", "key"),
    [
        ("timestamp", "9999-12-31T23:59:59.999999"),
        ("timestamp", "0001-01-01T00:00:00"),
        ("date", "9999-12-31"),
        ("date", "0001-01-01"),
        ("timestamptz", "9999-12-31T23:59:59.999999"),
    ],
)
def test_a_cursor_issued_before_text_keys_that_may_mean_infinity_is_bad_input(
    tmp_path: Path, data_type: str, key: str
) -> None:
    """Such a cursor cannot say whether it ended on infinity or on the largest (smallest) value:
    refused with a reason, never resumed at a guess (a row served twice, or skipped)."""
    with pytest.raises(GovernedError) as refused:
        _cursor_page(tmp_path, data_type, [key, 7], version=1)
    assert refused.value.code == "BAD_USER_INPUT" and "infinity" in str(refused.value)


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        ("decimal(10,2)", "CAST(i AS DECIMAL(10, 2))"),
        ("uuid", "CAST(printf('00000000-0000-0000-0000-%012d', i) AS UUID)"),
    ],
)
def test_a_decimal_or_uuid_order_after_another_column_serves_each_row_once(
    tmp_path: Path, data_type: str, value: str
) -> None:
    """Ordered by a text column, then a decimal (or a uuid), NULL on every other row: a page ending
    on a NULL got a keyset cursor, the next one, ending on a Decimal (a UUID: no JSON form), an offset
    cursor counted from that page only, and the walk went back to the top for ever (rows 0 and 3
    over and over). Orders by such columns page with offsets from the start."""
    first = (ColumnSpec("a", "varchar"), "CAST(i // 2 AS VARCHAR)")
    sql = f"CASE WHEN i % 2 = 0 THEN NULL ELSE {value} END"
    walked = _walk(tmp_path, ColumnSpec("d", data_type), sql, 1, 20, "DESC", first=first)
    assert walked == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8]


# Trips of bob's department whose departure is 'infinity' (rows 0..3), '-infinity' (4, 5), the
# value Python is handed for 'infinity' (6, 7) or an hour apart (the rest).
TIMETABLE = dataclasses.replace(
    STOPS,
    product="timetable",
    description="Trips.",
    key="trip",
    columns=(
        ColumnSpec("trip", "integer", "Trip"),
        ColumnSpec("district", "varchar", "City district"),
        ColumnSpec("departs", "timestamp", "Departure"),
    ),
)
TIMETABLE_SQL = (
    "SELECT CAST(i AS INTEGER) AS trip, 'D' || (i % 3 + 1) AS district, CASE WHEN i < 4 THEN "
    "'infinity'::TIMESTAMP WHEN i < 6 THEN '-infinity'::TIMESTAMP WHEN i < 8 THEN "
    "TIMESTAMP '9999-12-31 23:59:59.999999' ELSE TIMESTAMP '2026-01-01' + INTERVAL (i) HOUR END AS departs "
    "FROM range(30) t(i)"
)


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_a_timestamp_order_through_infinity_pages_each_row_once_over_http(
    server: Any, gw_settings: Any, publish_product: Any, direction: str
) -> None:
    """Through GraphQL (reads.read_page, the result cache): bob's walks by departure, 1, 2 and 3
    rows a page, then 1 again (the same requests: answered from the result cache), are each one
    big page's rows, each once."""
    publish_product(gw_settings, TIMETABLE, TIMETABLE_SQL)

    def trips(args: str) -> dict[str, Any]:
        query = (
            f"{{ transportation {{ timetable({args}, orderBy: [{{departs: {direction}}}]) "
            "{ nodes { trip } pageInfo { hasNextPage endCursor } } } }"
        )
        body = server.gql(query, "bob")
        for _ in range(50):  # the new product is served within a second
            if "errors" not in body:
                break
            time.sleep(0.1)
            body = server.gql(query, "bob")
        assert "errors" not in body, body
        page: dict[str, Any] = body["data"]["transportation"]["timetable"]
        return page

    whole = [n["trip"] for n in trips("first: 1000")["nodes"]]
    assert len(whole) == len(set(whole)) > 8 and {0, 4, 6} & set(whole)
    for size in (1, 2, 3, 1):
        paged: list[int] = []
        after = ""
        for _ in range(len(whole) + 1):  # a walk that repeats rows would never end
            got = trips(f"first: {size}{after}")
            paged += [n["trip"] for n in got["nodes"]]
            if not got["pageInfo"]["hasNextPage"]:
                break
            after = f', after: "{got["pageInfo"]["endCursor"]}"'
        assert paged == whole, size


def test_a_nanosecond_timestamp_order_ends(tmp_path: Path) -> None:
    """Ten rows one nanosecond apart, ordered by that column: keyset cursors made the walk endless
    (each end cursor the same truncated microsecond; 40 pages served rows 1..3 over and over).
    Such orders page with offset cursors."""
    sql = "make_timestamp_ns(1577836800000001000 + i)"
    assert _walk(tmp_path, ColumnSpec("ts", "timestamp_ns"), sql) == list(range(10))


# -- the micro-optimisations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 64 + b"]" * 64,
        b'{"a":' * 64 + b"1" + b"}" * 64,
        b'["[[[[[[[[", ' + b"[" * 60 + b"]" * 60 + b"]",  # brackets in strings count for the skip only
        b'"\\"' + b"[" * 70,  # an escaped quote: the brackets after it are in an open string
        b'"\\\\"' + b"[" * 70,  # an escaped backslash closes the string: 70 levels
        b"]" * 100 + b"[" * 65,  # closing first: never valid JSON, must not crash
    ],
)
def test_too_deep_agrees_with_a_full_scan(body: bytes) -> None:
    """Held: the bracket-count shortcut never lets through a body the full scan refuses."""
    limit = 64
    depth = deepest = 0
    in_string = escaped = False
    for ch in body.decode():
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    assert too_deep(body, limit) == (deepest > limit)


def test_a_re_pointed_snapshot_link_is_not_served_from_its_old_target(tmp_path: Path) -> None:
    """Held as documented: `resolved` keeps a path's first target for the process. A snapshot file's
    name is its checksum, so an old target holds the same bytes or nothing; the cache never
    resolves outside what the path first named."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    link = tmp_path / "home"
    link.symlink_to(a)
    first = resolved(str(link / "x.parquet"))
    link.unlink()
    link.symlink_to(b)
    assert resolved(str(link / "x.parquet")) == first == os.path.realpath(a / "x.parquet")


class _Sub(str):
    pass


@pytest.mark.parametrize("value", ["plain", _Sub("sub"), 7, 1.5, True, None, ""])
def test_complete_row_serialises_as_graphql_core(value: Any) -> None:
    """Held: a String field's value comes out exactly as graphql-core's `serialize_string` gives it
    (str subclasses, numbers, booleans, None)."""
    from graphql import GraphQLField, GraphQLObjectType

    row = GraphQLObjectType("Row", {"name": GraphQLField(GraphQLString)})
    plan = [("name", "name", GraphQLString.serialize)]
    got = FastRowsExecutionContext._complete_row(None, row, plan, {"name": value})  # type: ignore[arg-type]
    want = None if value is None else GraphQLString.serialize(value)
    assert got == {"name": want} and type(got["name"]) is type(want)


def test_offset_pages_of_the_file_and_of_its_hot_copy_are_the_same_rows(tmp_path: Path) -> None:
    """Held: an offset walk that starts on the file and goes on in the hot copy (loaded meanwhile)
    neither repeats nor skips rows: both hold the file's rows in the file's order (stored order
    read without ORDER BY, `presorted`, and by `file_row_number` otherwise)."""
    spec = dataclasses.replace(STOPS, key=None)
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t AS {STOPS_SQL.replace('range(60)', 'range(3000)')}")
        path = str(write_snapshot(con, "t", tmp_path, snapshot_order(spec)).path)
        order = file_order(con, path)
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        deadline = time.monotonic() + 60
        while (table := pool.source(path, Path(path).stat().st_size)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        walks = []
        for sources in ((None, table), (table, None), (None, None)):
            rows: list[Any] = []
            for order_by in ((), (("name", "DESC"),)):
                for page, source in enumerate(sources * 10):
                    query = PageQuery(
                        spec=spec,
                        path=path,
                        table=source,
                        columns=["stop"],
                        order_by=order_by,
                        limit=150,
                        offset=150 * page,
                        file_order=order,
                    )
                    rows += [r[0] for r in pool.run(*query.page_sql()).rows[:150]]
            walks.append(rows)
    finally:
        pool.close()
    assert walks[0] == walks[1] == walks[2] and sorted(walks[0][:3000]) == list(range(3000))


def test_a_cursor_pages_its_snapshot_after_a_new_one_is_published(
    stops: Any, gw_settings: Any, publish_product: Any
) -> None:
    """Held: bob's offset cursor pins its snapshot; a new snapshot (rows in another order, more of
    them) published between two pages does not shift his second page."""
    first = _page(_stops(stops, "first: 5"))
    before = _page(_stops(stops, f'first: 5, after: "{first["pageInfo"]["endCursor"]}"'))
    publish_product(gw_settings, STOPS, STOPS_SQL.replace("range(60) t(i)", "range(90) t(i) ORDER BY i DESC"))
    for _ in range(50):  # the new snapshot is current within a second
        if len(_page(_stops(stops, "first: 1000"))["nodes"]) == 90:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the new snapshot was not served")
    after = _page(_stops(stops, f'first: 5, after: "{first["pageInfo"]["endCursor"]}"'))
    assert after["nodes"] == before["nodes"]
