"""Attacks on pages read in a snapshot's stored order (`PageQuery.presorted`, issue 16).

Each test is a request a hostile or careless user can send, or a snapshot the publish code can
write, and asserts what must hold: the page is the page ORDER BY gives, and the stored order shows
nothing a mask hides. Real DuckDB (the gateway's pool) over real Parquet files written by
`write_snapshot` in the product's order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway.duck import DuckPool
from gateway.query import Cursor, PageQuery
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import FileOrder, file_order, snapshot_order, write_snapshot
from policies.decision import RowFilter
from tests.gateway.masked_pages import masked_walk

D1 = RowFilter("district", ("D1",))


def _spec(columns: tuple[ColumnSpec, ...], key: str | None, cluster_by: Any = ()) -> ProductSpec:
    return ProductSpec(
        department="public_works",
        product="service_requests",
        classification="internal",
        owner="o@x.example",
        description="",
        columns=columns,
        key=key,
        scope_column="district",
        cluster_by=cluster_by,
    )


def _publish(folder: Path, spec: ProductSpec, sql: str, prelude: str = "") -> str:
    """`sql` (after the statements `prelude`) written as `spec`'s snapshot in its product's order,
    as publish writes a mart."""
    con = duckdb.connect()
    try:
        con.execute(f"{prelude}CREATE TABLE t AS {sql}")
        return str(write_snapshot(con, "t", folder, snapshot_order(spec)).path)
    finally:
        con.close()


def _stated(path: str) -> FileOrder:
    with duckdb.connect() as con:
        return file_order(con, path)


def _clustered(column: str, data_type: str, direction: str) -> ProductSpec:
    """Service requests (key request_id, scope district) clustered by `column`."""
    columns = (
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("district", "varchar"),
        ColumnSpec(column, data_type),
    )
    return _spec(columns, key="request_id", cluster_by=((column, direction),))


REQUESTS = _clustered("opened_at", "timestamp", "DESC")
CATEGORIES = _clustered("category", "varchar", "ASC")


def _both_ways(
    folder: Path,
    sql: str,
    spec: ProductSpec = REQUESTS,
    prelude: str = "",
    shown: str = "request_id",
    **kwargs: Any,
) -> tuple[list[list[tuple[Any, ...]]], bool]:
    """District D1's page of `sql` published as `spec`: read in the order its file states (read
    without ORDER BY where `presorted` allows), then with ORDER BY (no stated order); and whether
    the first was read without ORDER BY. The page holds column `shown`."""
    path = _publish(folder, spec, sql, prelude)
    pool = DuckPool(folder, "key", threads=2)
    try:
        pages, fast = [], False
        for stored in (_stated(path), FileOrder()):
            query = PageQuery(
                spec=spec,
                path=path,
                columns=[shown],
                row_filter=D1,
                file_order=stored,
                **kwargs,
            )
            pages.append(pool.run(*query.page_sql()).rows)
            fast = fast if stored == FileOrder() else query.presorted()
        return pages, fast
    finally:
        pool.close()


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is one with daylight saving time (DuckDB takes its session
    `TimeZone` from it when a database is opened), as on a server not set to UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_instant_that_two_local_times_equal_does_not_pin_the_page_order(
    tmp_path: Path, new_york: None
) -> None:
    """`opened_at: {eq: "2026-03-08T07:30:00Z"}` on a `timestamp` (local) column: in a time zone
    with daylight saving time both 02:30 (a time the clocks skip) and 03:30 on that day are that
    instant, so the filter passes two different stored values. The column is not constant over
    the rows it leaves, and the stored order (opened_at DESC) is not the page's (request_id)."""
    pages, _ = _both_ways(
        tmp_path,
        "SELECT * FROM (VALUES ('SR-1', 'D1', TIMESTAMP '2026-03-08 02:30'), "
        "('SR-2', 'D1', TIMESTAMP '2026-03-08 03:30')) v(request_id, district, opened_at)",
        where={"opened_at": {"eq": datetime(2026, 3, 8, 7, 30, tzinfo=UTC)}},
    )
    assert pages[1] == [("SR-1",), ("SR-2",)]  # both local times are the instant asked for
    assert pages[0] == pages[1]


BY_CATEGORY = "SELECT request_id, district, {category} AS category FROM (VALUES ('SR-1', 'D1', 'b'), "
BY_CATEGORY += (
    "('SR-2', 'D1', 'B'), ('SR-3', 'D1', 'a'), ('SR-4', 'D1', 'A')) v(request_id, district, category)"
)


def test_a_collated_mart_column_is_written_in_the_order_the_gateway_sorts_by(tmp_path: Path) -> None:
    """A mart whose column carries a collation (`category COLLATE NOCASE` in the model's SQL: DuckDB
    keeps it in the warehouse table, `DESCRIBE` still says VARCHAR). Sorted by it, the file holds
    'a', 'A', 'b', 'B'; the gateway's ORDER BY (the file's plain VARCHAR) sorts 'A', 'B', 'a', 'b'.
    The file must be written in the order it states, in the gateway's (byte) order."""
    sql = BY_CATEGORY.format(category="category COLLATE NOCASE")
    pages, fast = _both_ways(tmp_path, sql, CATEGORIES, shown="category", order_by=[("category", "ASC")])
    assert pages[1] == [("A",), ("B",), ("a",), ("b",)]
    assert fast and pages[0] == pages[1]


def test_an_enum_mart_column_states_no_order_it_is_not_read_in(tmp_path: Path) -> None:
    """A mart column of an ENUM type sorts by the type's declared order ('b' before 'a' here); the
    file holds it as VARCHAR, which the gateway sorts as text. The file must not state an order by
    it (the file's order up to it is still stated: the scope column)."""
    prelude = "CREATE TYPE category AS ENUM ('b', 'B', 'a', 'A'); "
    pages, fast = _both_ways(
        tmp_path,
        BY_CATEGORY.format(category="CAST(category AS category)"),
        CATEGORIES,
        prelude,
        shown="category",
        order_by=[("category", "ASC")],
    )
    assert pages[1] == [("A",), ("B",), ("a",), ("b",)]
    assert not fast and pages[0] == pages[1]
    assert _stated(next(str(p) for p in tmp_path.glob("*.parquet"))).stated == (("district", "ASC"),)


EMAILS = """
SELECT i AS ticket, 'D' || (1 + i % 2) AS district,
       chr(CAST(97 + (i * 7) % 26 AS INTEGER)) || chr(CAST(97 + (i * 11) % 26 AS INTEGER))
           || i || '@mail.example' AS email
FROM range(400) t(i)
"""


def _in_email_order(folder: Path, spec: ProductSpec) -> bool:
    """Publish EMAILS as `spec`, read district D1 as a reader who sees `email` hashed (default
    order), and tell whether the served tickets come in their raw e-mails' order."""
    path = _publish(folder, spec, EMAILS)
    raw = dict(duckdb.sql(f"SELECT ticket, email FROM read_parquet('{path}')").fetchall())
    pool = DuckPool(folder, "key", threads=2)
    try:
        query = PageQuery(
            spec=spec,
            path=path,
            columns=["ticket", "email"],
            masks={"email": "hash"},
            row_filter=D1,
            limit=1000,
            file_order=_stated(path),
        )
        rows = pool.run(*query.page_sql()).rows
    finally:
        pool.close()
    assert len(rows) == 200 and all(r[1] != raw[r[0]] for r in rows)  # every e-mail masked
    tickets = [r[0] for r in rows]
    return tickets == sorted(tickets, key=lambda t: raw[t])


def test_a_masked_key_does_not_order_the_rows_a_reader_sees(tmp_path: Path) -> None:
    """A product keyed by personal data (an e-mail, shown hashed): a reader without `read_pii`
    pages by file row number (the key is masked, so it cannot order the page). If the file is
    written in key order, the pages list the rows in the raw e-mails' alphabetical order: which
    tickets' requesters sort first shows through the mask."""
    email = ColumnSpec("email", "varchar", tags=("pii",), mask="hash")
    spec = _spec((ColumnSpec("ticket", "integer"), ColumnSpec("district", "varchar"), email), key="email")
    assert not _in_email_order(tmp_path, spec)


def test_a_column_made_personal_after_it_clustered_a_snapshot_does_not_order_the_rows(tmp_path: Path) -> None:
    """A keyless product clustered by `email` while it was not tagged PII; the owner then tags it
    (the current spec masks it, `reads.served_columns`). The snapshot written before states it is
    ordered by `email`, so its row numbers do not order a reader who sees `email` masked."""
    columns = (
        ColumnSpec("ticket", "integer"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("email", "varchar"),
    )
    assert not _in_email_order(tmp_path, _spec(columns, key=None, cluster_by=(("email", "ASC"),)))


KEYLESS = _spec(
    (
        ColumnSpec("ticket", "integer"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("email", "varchar", tags=("pii",), mask="hash"),
    ),
    key=None,
)


def _masked_pages(path: str, order: FileOrder, page: int = 1000) -> tuple[list[Any], list[PageQuery]]:
    """Every D1 row of KEYLESS at `path` (ticket, hashed e-mail) as a reader who sees `email`
    hashed, page by page with keyset cursors; and the queries run."""
    pool = DuckPool(Path(path).parent, "key", threads=2)
    try:
        pages = masked_walk(pool, KEYLESS, path, order, page)
    finally:
        pool.close()
    return [r[:2] for _, rows in pages for r in rows], [query for query, _ in pages]


def _email_order(path: str) -> list[int]:
    return [
        r[0]
        for r in duckdb.sql(f"SELECT ticket FROM '{path}' WHERE district = 'D1' ORDER BY email").fetchall()
    ]


def test_a_file_that_states_no_order_does_not_order_a_masked_readers_rows(tmp_path: Path) -> None:
    """A snapshot written before files stated their order (or by another tool), its rows sorted
    by the e-mail: a reader who sees the e-mail hashed pages the keyless product in an order that
    is not the e-mails', and the cursors carry no row numbers (which would give the file order)."""
    path = str(tmp_path / "old.parquet")
    duckdb.sql(f"COPY ({EMAILS} ORDER BY email) TO '{path}' (FORMAT parquet)")
    con = duckdb.connect()
    assert file_order(con, path) == FileOrder()
    rows, queries = _masked_pages(path, FileOrder(), page=1000)
    tickets = [r[0] for r in rows]
    assert sorted(tickets) == sorted(_email_order(path)) and tickets != _email_order(path)
    assert queries[0].sort_terms() == [("__row_shuffle", "ASC")]


def test_shuffled_pages_follow_each_other_without_gaps_or_repeats(tmp_path: Path) -> None:
    """The same reader pages 200 rows 7 at a time with keyset cursors: every row once, in the
    order one page of all of them gives, and no cursor holds a row number."""
    path = str(tmp_path / "old.parquet")
    duckdb.sql(f"COPY ({EMAILS} ORDER BY email) TO '{path}' (FORMAT parquet)")
    whole, _ = _masked_pages(path, FileOrder(), page=1000)
    paged, queries = _masked_pages(path, FileOrder(), page=7)
    assert paged == whole and len(paged) == 200
    positions = set(range(400))
    for query in queries[1:]:
        assert query.after is not None and query.after.keys is not None
        assert not positions & set(query.after.keys)  # pseudonyms (< 2**56), not row numbers


def test_rows_that_tie_on_every_visible_column_are_not_left_in_the_input_order(tmp_path: Path) -> None:
    """A keyless product whose rows differ only in the masked e-mail (every visible column ties):
    written in its product's order, the file cannot say its order depends on visible columns only
    (ties keep much of the mart's e-mail order), so a masked reader's pages are not in file order."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS SELECT 7 AS ticket, district, email FROM ({EMAILS}) ORDER BY email")
    path = str(write_snapshot(con, "t", tmp_path, snapshot_order(KEYLESS)).path)
    order = file_order(con, path)
    assert order.ordered_by is None and order.stated == (("district", "ASC"), ("ticket", "ASC"))
    rows, _ = _masked_pages(path, order)
    pool = DuckPool(tmp_path, "key")
    try:  # the hashed e-mails in file (e-mail) order
        in_file = [
            r[0] for r in pool.run(f"SELECT cm_pseudonym(email) FROM '{path}' WHERE district = 'D1'").rows
        ]
    finally:
        pool.close()
    shown = [r[1] for r in rows]
    assert sorted(shown) == sorted(in_file) and shown != in_file


def test_a_keyless_product_written_in_its_order_is_paged_by_row_number(tmp_path: Path) -> None:
    """Its visible columns tell every row apart: the file states its order depends on them only,
    and a masked reader pages it by row number (no shuffle), in visible-column order."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {EMAILS} ORDER BY email")
    path = str(write_snapshot(con, "t", tmp_path, snapshot_order(KEYLESS)).path)
    order = file_order(con, path)
    assert order.ordered_by == {"district", "ticket"}
    rows, queries = _masked_pages(path, order)
    assert queries[0].sort_terms() == [("file_row_number", "ASC")]
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_offset_cursor_pages_in_stored_order_are_the_order_by_pages(tmp_path: Path) -> None:
    """An `after` in the old offset form: LIMIT/OFFSET without ORDER BY over many row groups read
    in parallel still gives the rows ORDER BY gives (held)."""
    pages, fast = _both_ways(
        tmp_path,
        "SELECT 'SR-' || lpad(CAST((i * 7919) % 20000 AS VARCHAR), 5, '0') AS request_id, "
        "'D' || (1 + i % 3) AS district, "
        "TIMESTAMP '2026-01-01' + to_hours(CAST(i % 97 AS BIGINT)) AS opened_at "
        "FROM range(20000) t(i)",
        order_by=[("opened_at", "DESC")],
        limit=50,
        offset=Cursor.decode(Cursor("s", offset=3000).encode()).offset,
    )
    assert fast and len(pages[1]) == 51 and pages[0] == pages[1]
