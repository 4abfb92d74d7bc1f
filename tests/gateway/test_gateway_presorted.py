"""Pages read in a snapshot's stored order, without ORDER BY, are exactly the pages ORDER BY gives.

A snapshot is written in its product's order (scope column, `cluster_by`, key) and says so in its
Parquet metadata; a page whose order that is, on the rows its filter leaves, is read without
ORDER BY and stops after its rows (`PageQuery.presorted`). First the truth table of when that
holds, then the property that matters: over a snapshot with ties, NULLs and several districts,
in many row groups, every page of every order and filter, walked by keyset cursors, is the same
with and without the stored order, read from the hot copy and from the file.

Real DuckDB and real Parquet files; the pool is the gateway's (`gateway.duck.DuckPool`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from gateway import copies
from gateway.duck import DuckPool
from gateway.query import PageQuery
from meshcore import snapshots
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import FileOrder, file_order, snapshot_order, write_snapshot
from policies.decision import RowFilter

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="o@x.example",
    description="",
    columns=(
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("category", "varchar"),
        ColumnSpec("opened_at", "timestamp"),
        ColumnSpec("priority", "integer"),
        ColumnSpec("response_hours", "double"),
        ColumnSpec("requester_name", "varchar", tags=("pii",), mask="hash"),
    ),
    key="request_id",
    scope_column="district",
    cluster_by=(("opened_at", "DESC"),),
)
STORED = (("district", "ASC"), ("opened_at", "DESC"), ("request_id", "ASC"))
ROWS = 3000
# Ties (a few hundred distinct hours), NULLs in every sort column but the key, NULL districts.
DATA = f"""
SELECT 'SR-' || lpad(CAST((i * 7919) % {ROWS} AS VARCHAR), 5, '0') AS request_id,
       CASE WHEN i % 53 = 0 THEN NULL ELSE 'D' || (1 + i % 4) END AS district,
       ['pothole', 'graffiti', 'streetlight', 'noise', 'dumping'][1 + (i // 3) % 5] AS category,
       CASE WHEN i % 31 = 0 THEN NULL
            ELSE TIMESTAMP '2026-01-01' + to_hours(CAST((i * 37) % 300 AS BIGINT)) END AS opened_at,
       CASE WHEN i % 11 = 0 THEN NULL ELSE CAST(i % 4 AS INTEGER) END AS priority,
       CAST((i * 13) % 97 AS DOUBLE) / 4 AS response_hours,
       'person ' || i AS requester_name
FROM range({ROWS}) t(i)
"""
TIE = datetime(2026, 1, 1, 5)  # an opened_at many rows share


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A pool holding the snapshot, written in its product's order in row groups of 256 rows and
    copied in row groups of 2,048 (so scans run in parallel and copies hold several groups)."""
    folder = tmp_path_factory.mktemp("snapshots")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(snapshots, "ROW_GROUP_SIZE", 256)
        mp.setattr(copies, "COPY_ROW_GROUP_ROWS", 2048)
        con = duckdb.connect()
        con.execute(f"CREATE TABLE t AS {DATA}")
        path = write_snapshot(con, "t", folder, snapshot_order(SPEC)).path
        con.close()
        pool = DuckPool(folder, "key", threads=2)
        deadline = time.monotonic() + 60
        while (table := pool.source(str(path), path.stat().st_size)) is None:
            assert str(path) not in pool._unfit and time.monotonic() < deadline
            time.sleep(0.02)
    yield pool, str(path), table
    pool.close()


def _query(path: str, table: str | None, order: Any, **kwargs: Any) -> PageQuery:
    return PageQuery(
        spec=SPEC,
        path=path,
        table=table,
        file_order=FileOrder(order, unique=frozenset({"request_id"})),  # the key: unique
        columns=["request_id", "district", "opened_at", "priority", "requester_name"],
        masks={"requester_name": "hash"},
        with_keys=True,
        **kwargs,
    )


def test_the_product_order_is_written_and_stated_in_the_file(pool: Any) -> None:
    p, path, _ = pool
    assert snapshot_order(SPEC) == STORED
    assert p.read_file_order(path) == FileOrder(STORED, frozenset(c for c, _ in STORED))
    rows = duckdb.sql(f"SELECT district, opened_at, request_id FROM read_parquet('{path}')").fetchall()
    # NULLs last in both directions, as the gateway's ORDER BY puts them.
    expected = sorted(
        rows,
        key=lambda r: (r[0] is None, r[0] or "", r[1] is None, -(r[1].timestamp() if r[1] else 0), r[2]),
    )
    assert rows == expected


def test_a_file_without_a_stated_order_is_read_with_order_by(tmp_path: Path) -> None:
    plain = tmp_path / "plain.parquet"
    duckdb.sql(f"COPY ({DATA}) TO '{plain}' (FORMAT parquet)")
    garbled = tmp_path / "garbled.parquet"
    duckdb.sql(
        f"COPY ({DATA}) TO '{garbled}' (FORMAT parquet, "
        f'KV_METADATA {{{snapshots.SORT_ORDER_KEY}: \'[["district", "SIDEWAYS"]]\'}})'
    )
    con = duckdb.connect()
    assert file_order(con, plain) == FileOrder() and file_order(con, garbled).stated == ()
    query = _query(
        str(plain), None, (), row_filter=RowFilter("district", ("D1",)), order_by=[("opened_at", "DESC")]
    )
    assert not query.presorted() and " ORDER BY " in query.page_sql()[0]


D1 = RowFilter("district", ("D1",))
# (row filter, where, orderBy) -> read in stored order? The stored order is
# (district ASC, opened_at DESC, request_id ASC), then the file row number.
CASES: list[tuple[RowFilter | None, dict[str, Any] | None, list[tuple[str, str]], bool]] = [
    (D1, None, [("opened_at", "DESC")], True),  # a scoped reader's newest rows
    (D1, {"category": {"eq": "pothole"}}, [("opened_at", "DESC")], True),
    (D1, None, [("opened_at", "DESC"), ("request_id", "ASC")], True),
    (D1, None, [("opened_at", "ASC")], False),  # the other direction
    (D1, None, [], False),  # key order: opened_at comes first in the stored order
    (D1, None, [("priority", "DESC")], False),
    (RowFilter("district", ("D1", "D3")), None, [("opened_at", "DESC")], False),  # two districts
    (None, None, [("opened_at", "DESC")], False),  # every district
    (None, {"district": {"eq": "D2"}}, [("opened_at", "DESC")], True),
    (None, {"district": {"in_": ["D2"]}}, [("opened_at", "DESC")], True),
    (None, {"district": {"in_": ["D2", "D3"]}}, [("opened_at", "DESC")], False),
    (None, {"and": [{"district": {"eq": "D2"}}, {"priority": {"gte": 1}}]}, [("opened_at", "DESC")], True),
    (None, {"or": [{"district": {"eq": "D2"}}]}, [("opened_at", "DESC")], False),
    (None, {"not": {"district": {"eq": "D2"}}}, [("opened_at", "DESC")], False),
    (None, {"district": {"ne": "D2"}}, [("opened_at", "DESC")], False),
    (None, None, [("district", "ASC"), ("opened_at", "DESC")], True),  # the stored order itself
    (None, None, [("district", "DESC"), ("opened_at", "DESC")], False),
    (D1, {"opened_at": {"eq": TIE}}, [], True),  # district and opened_at pinned: key order
    (D1, {"opened_at": {"eq": TIE}}, [("request_id", "DESC")], False),
    # An instant pins no `timestamp` column: two local times can be one instant (daylight saving).
    (D1, {"opened_at": {"eq": TIE.replace(tzinfo=UTC)}}, [], False),
    (None, {"request_id": {"eq": "SR-00042"}}, [("priority", "DESC")], False),  # no rule for one row
    (D1, {"response_hours": {"eq": 2.0}}, [("opened_at", "DESC")], True),
    # A float `eq` pins nothing (-0.0 = 0.0): response_hours still orders the page.
    (
        None,
        {"district": {"eq": "D1"}, "response_hours": {"eq": 2.0}},
        [("response_hours", "ASC"), ("opened_at", "DESC")],
        False,
    ),
]


@pytest.mark.parametrize(("row_filter", "where", "order_by", "presorted"), CASES)
def test_when_a_page_is_read_in_stored_order(
    pool: Any, row_filter: RowFilter | None, where: Any, order_by: list[tuple[str, str]], presorted: bool
) -> None:
    _, path, table = pool
    query = _query(path, table, STORED, row_filter=row_filter, where=where, order_by=order_by)
    assert query.presorted() is presorted
    assert (" ORDER BY " not in query.page_sql()[0]) is presorted
    assert not _query(path, table, (), row_filter=row_filter, where=where, order_by=order_by).presorted()


FILTERS: list[tuple[RowFilter | None, dict[str, Any] | None]] = [
    (None, None),
    (D1, None),
    (RowFilter("district", ("D2", "D4")), None),
    (D1, {"category": {"eq": "pothole"}}),
    (None, {"district": {"eq": "D3"}, "priority": {"is_null": False}}),
    (None, {"and": [{"district": {"in_": ["D4"]}}, {"opened_at": {"lt": datetime(2026, 1, 8)}}]}),
    (D1, {"opened_at": {"eq": TIE}}),
    (None, {"or": [{"district": {"eq": "D1"}}, {"district": {"is_null": True}}]}),
]
ORDERS: list[list[tuple[str, str]]] = [
    [],
    [("opened_at", "DESC")],
    [("opened_at", "ASC")],
    [("district", "ASC"), ("opened_at", "DESC")],
    [("priority", "DESC"), ("opened_at", "DESC")],
]


def _walk(pool: DuckPool, query: PageQuery, size: int, most: int) -> list[list[tuple[Any, ...]]]:
    """The first `most` pages of `query` of `size` rows, each after the previous page's cursor."""
    pages: list[list[tuple[Any, ...]]] = []
    query.limit, query.after = size, None
    while True:
        rows = pool.run(*query.page_sql()).rows
        pages.append(rows[:size])
        if len(rows) <= size or len(pages) == most:
            return pages
        query.after = query.end_cursor("s", rows[size - 1][5:], 0)


@pytest.mark.parametrize("source", ["hot copy", "file"])
def test_every_page_in_stored_order_is_the_page_order_by_gives(pool: Any, source: str) -> None:
    p, path, table = pool
    table = table if source == "hot copy" else None
    read_in_stored_order = 0
    for row_filter, where in FILTERS:
        for order_by in ORDERS:
            for size, most in ((17, 3), (500, 10)):
                fast = _query(path, table, STORED, row_filter=row_filter, where=where, order_by=order_by)
                slow = _query(path, table, (), row_filter=row_filter, where=where, order_by=order_by)
                got, expected = _walk(p, fast, size, most), _walk(p, slow, size, most)
                assert got == expected, (row_filter, where, order_by, size)
                assert sum(len(page) for page in got) > 0 or where is not None
                read_in_stored_order += fast.presorted()
    assert read_in_stored_order >= 8  # the comparison above did cover the path without ORDER BY
