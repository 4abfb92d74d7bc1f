"""Truth table: the last sort term of a page (`PageQuery.sort_terms`), which decides the order of
rows that tie on everything asked for, and whether it may be the file row number (issue 16).

The file row number shows where a row sits in the snapshot file; it may order a reader's rows
only when the file states its order depends on columns that reader sees in clear
(`FileOrder.reveals`). Otherwise the rows tie-break on a keyed pseudonym of it (`__row_shuffle`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import pytest

from gateway.duck import DuckPool, RowShuffleKey
from gateway.query import PageQuery
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import (
    ORDERED_BY_KEY,
    UNIQUE_KEY,
    FileOrder,
    RepeatedValues,
    file_order,
    write_snapshot,
)

COLUMNS = (ColumnSpec("ticket", "integer"), ColumnSpec("district", "varchar"), ColumnSpec("email", "varchar"))
UNKNOWN = FileOrder()
BY_VISIBLE = FileOrder((("district", "ASC"),), frozenset({"district", "ticket"}))
BY_EMAIL = FileOrder((("district", "ASC"),), frozenset({"district", "email"}))
UNIQUE = frozenset({"ticket"})  # the file states (or the pool found) no ticket repeats


def _unique(order: FileOrder) -> FileOrder:
    return dataclasses.replace(order, unique=UNIQUE)


# (key, masks, file order) -> last sort term
CASES = [
    ("ticket", {}, _unique(UNKNOWN), "ticket"),
    ("ticket", {"email": "hash"}, _unique(UNKNOWN), "ticket"),  # a unique visible key is a total order
    ("ticket", {"email": "hash"}, _unique(BY_EMAIL), "ticket"),
    ("ticket", {}, UNKNOWN, "file_row_number"),  # a key not known unique: the rows' place decides ties
    ("ticket", {"email": "hash"}, UNKNOWN, "__row_shuffle"),
    ("ticket", {"email": "hash"}, BY_VISIBLE, "file_row_number"),
    (None, {}, UNKNOWN, "file_row_number"),  # nothing masked: the file order hides nothing
    (None, {}, BY_EMAIL, "file_row_number"),
    (None, {"email": "hash"}, UNKNOWN, "__row_shuffle"),  # may be ordered by the e-mail
    (None, {"email": "hash"}, BY_VISIBLE, "file_row_number"),
    (None, {"email": "hash"}, BY_EMAIL, "__row_shuffle"),
    ("email", {"email": "hash"}, BY_VISIBLE, "file_row_number"),  # a masked key cannot order
    ("email", {"email": "hash"}, BY_EMAIL, "__row_shuffle"),
    ("email", {"email": "hash"}, UNKNOWN, "__row_shuffle"),
    (None, {"ticket": "redact"}, BY_VISIBLE, "__row_shuffle"),  # a masked column ordered the file
]


@pytest.mark.parametrize(("key", "masks", "order", "last"), CASES)
def test_the_tie_breaker(key: str | None, masks: dict[str, str], order: FileOrder, last: str) -> None:
    spec = ProductSpec(
        department="public_works",
        product="tickets",
        classification="internal",
        owner="o@x.example",
        description="",
        columns=COLUMNS,
        key=key,
        scope_column="district",
    )
    query = PageQuery(spec=spec, path="/x.parquet", columns=["ticket"], masks=masks, file_order=order)
    assert query.sort_terms()[-1] == (last, "ASC")
    sql, params = query.page_sql()
    assert (RowShuffleKey("x.parquet") in params) == (last == "__row_shuffle")
    assert ("sha256(" in sql) == (last == "__row_shuffle")


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ('{"columns": ["district", "ticket"], "total": true}', frozenset({"district", "ticket"})),
        ('{"columns": ["district"], "total": false}', None),  # ties: the rest is the input's order
        ('{"columns": ["district"], "total": "yes"}', None),
        ('{"columns": ["district", 7], "total": true}', None),
        ('{"columns": "district", "total": true}', None),
        ('["district"]', None),
        ("not json", None),
    ],
)
def test_what_a_file_says_its_order_depends_on(tmp_path: Path, stated: str, expected: object) -> None:
    """Anything but a clear statement that the order is total on named columns reads as "may
    depend on any column"."""
    path = tmp_path / "f.parquet"
    metadata = f"{ORDERED_BY_KEY}: '{stated.replace(chr(39), chr(39) * 2)}'"
    duckdb.sql(f"COPY (SELECT 1 AS ticket) TO '{path}' (FORMAT parquet, KV_METADATA {{{metadata}}})")
    with duckdb.connect() as con:
        assert file_order(con, path).ordered_by == expected


def test_a_key_is_stated_unique_only_when_no_value_repeats(tmp_path: Path) -> None:
    """`write_snapshot(unique=...)` (publish passes the key) checks the rows it writes: a repeated
    value (NULL counting as one) writes nothing; else the file states the column unique."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT i AS ticket, CASE WHEN i < 2 THEN NULL ELSE i END AS n FROM range(5) t(i)"
    )
    written = write_snapshot(con, "t", tmp_path / "ok", (("ticket", "ASC"),), unique=("ticket",))
    assert file_order(con, written.path).unique == {"ticket"}
    with pytest.raises(RepeatedValues, match="'n' repeats 1 value"):
        write_snapshot(con, "t", tmp_path / "refused", (("ticket", "ASC"),), unique=("n",))
    assert not list((tmp_path / "refused").iterdir())


def test_the_pool_checks_a_key_a_file_does_not_state_unique(tmp_path: Path) -> None:
    """A file written before keys were stated (or forged to say nothing): the pool checks the key
    itself, once, and states what it found; a garbled statement counts as none."""
    repeated = tmp_path / "repeated.parquet"
    duckdb.sql(f"COPY (SELECT i % 3 AS ticket FROM range(9) t(i)) TO '{repeated}' (FORMAT parquet)")
    garbled = tmp_path / "garbled.parquet"
    duckdb.sql(
        f"COPY (SELECT i AS ticket FROM range(9) t(i)) TO '{garbled}' "
        f"(FORMAT parquet, KV_METADATA {{{UNIQUE_KEY}: '{{\"ticket\": 1}}'}})"
    )
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        assert pool.read_file_order(str(repeated), key="ticket").unique == frozenset()
        assert pool.read_file_order(str(garbled)).unique == frozenset()
        assert pool.read_file_order(str(garbled), key="ticket").unique == {"ticket"}
    finally:
        pool.close()
