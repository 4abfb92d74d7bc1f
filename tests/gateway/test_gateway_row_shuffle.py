"""The keyed row shuffle (`gateway.duck.ROW_SHUFFLE_SQL`): the order a masked reader pages rows that
tie on every column they may sort by, when the file's own order could show a masked column.

What must hold: each file has its own order; one order for every page, and for a hot copy and its
file; and its key, k_f, reaches nothing but DuckDB: not the SQL text or parameters the pool is
given (so not its result cache), not an error, a log record, a response or the access log. Real
DuckDB over real Parquet files, and a real server over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pytest

from gateway.duck import DuckPool, RowShuffleKey
from gateway.errors import BAD_USER_INPUT, GovernedError
from gateway.query import Cursor, PageQuery
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import FileOrder, file_order, snapshot_order, write_snapshot
from policies.decision import RowFilter

D1 = RowFilter("district", ("D1",))
SPEC = ProductSpec(
    department="transportation",
    product="callbacks",
    classification="internal",
    owner="tomas@city.example",
    description="Who to call back about a ticket.",
    scope_column="district",
    columns=(
        ColumnSpec("ticket", "integer", "Ticket"),
        ColumnSpec("district", "varchar", "City district"),
        ColumnSpec("email", "varchar", "Contact email", ("pii",), "hash"),
    ),
)
# Rows a reader who sees the e-mail hashed cannot tell apart, the mart in e-mail order.
TIED = """
SELECT {ticket} AS ticket, 'D1' AS district,
       'u' || lpad(CAST(i AS VARCHAR), 3, '0') || '@mail.example' AS email
FROM range({n}) t(i) ORDER BY email
"""


def _publish(folder: Path, sql: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t AS {sql}")
        return str(write_snapshot(con, "t", folder, snapshot_order(SPEC)).path)


def _order(path: str) -> FileOrder:
    with duckdb.connect() as con:
        return file_order(con, path)


def _page(path: str, order: FileOrder, size: int, table: str | None = None, after: Any = None) -> PageQuery:
    return PageQuery(
        spec=SPEC,
        path=path,
        table=table,
        columns=["email"],
        masks={"email": "hash"},
        row_filter=D1,
        limit=size,
        after=after,
        with_keys=True,
        file_order=order,
    )


def _shuffled(pool: DuckPool, path: str) -> list[str]:
    """Every hashed e-mail of `path`, one page, in the order a masked reader is served."""
    query = _page(path, _order(path), 1000)
    assert query.sort_terms()[-1] == ("__row_shuffle", "ASC")
    return [r[0] for r in pool.run(*query.page_sql()).rows]


def _in_file_order(pool: DuckPool, path: str) -> list[str]:
    return [r[0] for r in pool.run(f"SELECT cm_pseudonym(email) FROM '{path}'").rows]


def test_two_files_of_the_same_rows_are_shuffled_apart(tmp_path: Path) -> None:
    """Two snapshots holding the same 120 e-mails in the same places (the ticket differs, so the
    files and their names do): each in its own order, neither the file's."""
    first = _publish(tmp_path / "a", TIED.format(ticket=7, n=120))
    second = _publish(tmp_path / "b", TIED.format(ticket=8, n=120))
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        orders = [_shuffled(pool, first), _shuffled(pool, second)]
        in_file = _in_file_order(pool, first)
        assert in_file == _in_file_order(pool, second)
    finally:
        pool.close()
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(in_file)
    assert orders[0] != orders[1]
    assert in_file not in orders
    # Not the one order shifted, nor mostly shared: at most a few rows keep their place by chance.
    assert sum(a == b for a, b in zip(*orders, strict=True)) < 10


def test_a_file_column_named_like_the_shuffle_does_not_order_the_rows(tmp_path: Path) -> None:
    """An owner's mart with a column `__row_shuffle` (not in the spec) numbering the rows in e-mail
    order: the page must not sort by it (it did, silently: a column of the file wins over the one
    a query adds by the same name), so masked readers are not served the e-mails' order."""
    path = _publish(
        tmp_path,
        "SELECT *, row_number() OVER (ORDER BY email) AS __row_shuffle FROM ("
        + TIED.format(ticket=7, n=100)
        + ") ORDER BY email",
    )
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        by_email = [r[0] for r in pool.run(f"SELECT cm_pseudonym(email) FROM '{path}' ORDER BY email").rows]
        shuffled = _shuffled(pool, path)
    finally:
        pool.close()
    assert sorted(shuffled) == sorted(by_email) and shuffled != by_email


def test_pages_follow_one_order_across_the_hot_copy_and_the_file(tmp_path: Path) -> None:
    """Pages of 7, each after the previous page's keyset cursor, read alternately from the hot copy
    and from the file: every row once, in the order of one big page, twice over (stable)."""
    path = _publish(tmp_path, TIED.format(ticket=7, n=100))
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        deadline = time.monotonic() + 60
        while (table := pool.source(path, Path(path).stat().st_size)) is None:
            assert path not in pool._unfit and time.monotonic() < deadline
            time.sleep(0.02)
        whole = _shuffled(pool, path)
        order = _order(path)
        for first in (0, 1):
            paged: list[str] = []
            after = None
            for i in range(100):
                query = _page(path, order, 7, (table, None)[(i + first) % 2], after)
                rows = pool.run(*query.page_sql()).rows
                paged += [r[0] for r in rows[:7]]
                if len(rows) <= 7:
                    break
                after = query.end_cursor("s", rows[6][1:], 0)
                assert after.keys is not None
            assert paged == whole
    finally:
        pool.close()
    assert len(set(whole)) == 100


def test_a_cursor_of_the_old_python_shuffle_is_refused(tmp_path: Path) -> None:
    """A cursor issued before this shuffle (its order signed "__row_shuffle ASC" alone) holds a value
    of the old order: resumed here it would skip and repeat rows. A 400 BAD_USER_INPUT; a cursor
    of this shuffle resumes."""
    path = _publish(tmp_path, TIED.format(ticket=7, n=30))
    order = _order(path)
    old = hashlib.sha256(b"__row_shuffle ASC").hexdigest()[:16]
    query = _page(path, order, 10)
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        rows = pool.run(*query.page_sql()).rows
        after = query.end_cursor("s", rows[9][1:], 0)
        assert after.keys is not None and after.order != old
        resumed = pool.run(*_page(path, order, 10, after=after).page_sql()).rows
    finally:
        pool.close()
    assert len(resumed) == 11 and not {r[0] for r in resumed} & {r[0] for r in rows[:10]}
    with pytest.raises(GovernedError) as refused:
        _page(path, order, 10, after=Cursor("s", keys=after.keys, order=old)).page_sql()
    assert refused.value.code == BAD_USER_INPUT


def test_the_key_is_bound_by_the_pool_only(tmp_path: Path) -> None:
    """A page's SQL and parameters name the file, never k_f; the pool's result cache keys on them."""
    path = _publish(tmp_path, TIED.format(ticket=7, n=50))
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        key = pool._row_shuffle_key(Path(path).name)
        sql, params = _page(path, _order(path), 10).page_sql()
        result = pool.run(sql, params)
        cached = anyio.run(pool.run_async, sql, params)
        cache_keys = list(pool._cache)
    finally:
        pool.close()
    assert len(result.rows) == 11 and cached == result
    assert RowShuffleKey(Path(path).name) in params
    assert key not in sql and key not in repr(params)
    assert cache_keys and not any(key in part for entry in cache_keys for part in entry)


def test_a_duckdb_error_that_quotes_the_bound_key_is_withheld(tmp_path: Path) -> None:
    """DuckDB quotes bound values in some errors (a failed cast shows the string): an error of a
    statement the key is bound into must not carry it, even when DuckDB's message would."""
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        key = pool._row_shuffle_key("x.parquet")
        with pytest.raises(duckdb.ConversionException) as caught:
            pool.run("SELECT CAST(? AS INTEGER)", [RowShuffleKey("x.parquet")])
        with pytest.raises(duckdb.ConversionException) as plain:  # the same error, no key bound
            pool.run("SELECT CAST(? AS INTEGER)", ["not a number"])
    finally:
        pool.close()
    assert key not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "not a number" in str(plain.value)  # other values' errors are left as DuckDB wrote them


# Through real HTTP: bob (analyst of transportation: reads and exports, no `read_pii`) sees the
# e-mail hashed, so pages of the product are shuffled.


@pytest.fixture(scope="module")
def callbacks(server: Any, gw_settings: Any, publish_product: Any) -> Any:
    publish_product(gw_settings, SPEC, TIED.format(ticket=7, n=60))
    for _ in range(50):  # the new product is served within a second
        if "errors" not in _read(server, "first: 1"):
            return server
        time.sleep(0.1)
    raise AssertionError("the product was not served")


def _read(server: Any, args: str) -> dict[str, Any]:
    page = "nodes { email } pageInfo { hasNextPage endCursor }"
    query = f"{{ transportation {{ callbacks({args}) {{ {page} }} }} }}"
    response = server.post(query, "bob")
    assert response.status_code in (200, 400), response.text
    body: dict[str, Any] = response.json()
    return body


def _forged(cursor_text: str, keys: list[Any]) -> str:
    data = json.loads(base64.urlsafe_b64decode(cursor_text + "=" * (-len(cursor_text) % 4)))
    return base64.urlsafe_b64encode(json.dumps({**data, "k": keys}).encode()).decode().rstrip("=")


def test_the_key_reaches_no_query_text_response_log_or_access_record(
    callbacks: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bob pages the product with cursors, forges a cursor, and exports it. What the pool is
    given (SQL and parameters, for pages and the export's stream), every response, every log
    record and the metadata store (the access log) hold no k_f; the pool bound it each time."""
    pool = callbacks.server.config.app.state.gateway.duck
    given: list[tuple[str, list[Any]]] = []
    run, open_reader = pool.run, pool.open_reader

    def capture_run(sql: str, params: Any = ()) -> Any:
        given.append((sql, list(params)))
        return run(sql, params)

    def capture_reader(sql: str, params: Any, batch_rows: int) -> Any:
        given.append((sql, list(params)))
        return open_reader(sql, params, batch_rows)

    monkeypatch.setattr(pool, "run", capture_run)
    monkeypatch.setattr(pool, "open_reader", capture_reader)
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    after = ""
    for _ in range(20):
        got = _read(callbacks, f"first: 7{after}")
        answers.append(json.dumps(got))
        info = got["data"]["transportation"]["callbacks"]["pageInfo"]
        if not info["hasNextPage"]:
            break
        after = f', after: "{info["endCursor"]}"'
    forged = _read(callbacks, f'first: 1, after: "{_forged(info["endCursor"], [2**130])}"')
    answers.append(json.dumps(forged))
    assert forged["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    export = callbacks.client.get(
        "/exports/transportation.callbacks.json",
        headers={"Authorization": f"Bearer {callbacks.token('bob')}"},
    )
    assert export.status_code == 200, export.text
    answers.append(export.text)

    path = next((callbacks.settings.snapshots_dir / "transportation" / "callbacks").glob("*.parquet"))
    key = pool._row_shuffle_key(path.name)
    shuffled = [(sql, params) for sql, params in given if RowShuffleKey(path.name) in params]
    assert len(shuffled) >= 10  # 9 pages and the export's stream, at least
    assert not any(key in sql or key in repr(params) for sql, params in given)
    assert not any(key in answer for answer in answers)
    assert not any(key in record.getMessage() or key in (record.exc_text or "") for record in caplog.records)
    database = callbacks.settings.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as con:
        assert not any(key in line for line in con.iterdump())
