"""Hot snapshots: compressed in-memory copies, counted at their measured size, evicted least
recently used, and loaded while queries run without changing a single answer.

Real DuckDB, real Parquet files; the pool is the gateway's (`gateway.duck.DuckPool`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pytest

from gateway import duck
from gateway.duck import DuckPool
from gateway.query import PageQuery
from meshcore.products import ColumnSpec, ProductSpec

SPEC = ProductSpec(
    department="d",
    product="p",
    classification="internal",
    owner="o@x.example",
    description="",
    columns=(ColumnSpec("n", "bigint"), ColumnSpec("district", "varchar"), ColumnSpec("status", "varchar")),
)
IN_MEMORY_BYTES = (
    "SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
)


def _snapshot(folder: Path, name: str, rows: int) -> Path:
    """A Parquet file of `rows` rows of low-cardinality strings (what compresses, like city data)."""
    path = folder / f"{name}.parquet"
    duckdb.sql(
        "COPY (SELECT i AS n, 'D' || (i % 9) AS district, "
        "['open', 'closed', 'in_progress'][1 + i % 3] AS status "
        f"FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
    )
    return path


def _plain_copy_bytes(path: Path) -> int:
    """What an uncompressed in-memory table of `path` takes (what hot copies took before)."""
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{path}', file_row_number = true)")
        return int(con.execute(IN_MEMORY_BYTES).fetchone()[0])
    finally:
        con.close()


def _hot(pool: DuckPool, path: Path) -> str:
    """Ask for `path` until its copy serves (the first ask starts the background load)."""
    deadline = time.monotonic() + 60
    while (table := pool.source(str(path), path.stat().st_size)) is None:
        assert str(path) not in pool._unfit, "the load failed: the snapshot is read from its file"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return table


def _measured(folder: Path, path: Path) -> int:
    """The measured size of `path`'s hot copy, alone in a pool."""
    probe = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        _hot(probe, path)
        return probe._hot_bytes
    finally:
        probe.close()


def _open_transaction(pool: DuckPool) -> duckdb.DuckDBPyConnection:
    """A cursor of `pool` with a transaction open on the hot database (DuckDB then refuses a
    checkpoint, as it does while a query runs); COMMIT and close it to end that."""
    reader = pool._con.cursor()
    reader.execute("CREATE TABLE hot.other (i INTEGER)")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM hot.other").fetchall()
    return reader


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "snapshots"
    path.mkdir()
    return path


def test_a_hot_copy_is_compressed_and_counted_at_its_measured_size(folder: Path) -> None:
    path = _snapshot(folder, "a", 600_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        _hot(pool, path)
        held = pool._hot_bytes
        assert held == int(pool.run(IN_MEMORY_BYTES).rows[0][0])  # the measured size, not a guess
        assert held * 3 < _plain_copy_bytes(path)  # compressed: under a third of a plain copy
    finally:
        pool.close()


def test_the_budget_evicts_the_least_recently_used_copy_and_frees_its_memory(folder: Path) -> None:
    first, second = _snapshot(folder, "first", 400_000), _snapshot(folder, "second", 400_000)
    one = _measured(folder, first)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))  # room for one copy, not two
    try:
        _hot(pool, first)
        _hot(pool, second)
        assert pool.source(str(second), second.stat().st_size) is not None
        assert str(first) not in pool._hot  # evicted: it was used least recently
        assert pool._hot_bytes <= pool.hot_budget_bytes
        while pool._loading:  # the loader drops the evicted copy just after serving the new one
            time.sleep(0.01)
        assert int(pool.run(IN_MEMORY_BYTES).rows[0][0]) <= pool.hot_budget_bytes  # its memory went
    finally:
        pool.close()


def test_a_copy_loaded_while_queries_run_answers_exactly_like_the_file(folder: Path) -> None:
    """Loads and their checkpoints (which DuckDB refuses while a query runs) under a steady stream
    of queries: every answer, from the file or the copy, is the same rows in the same order."""
    path = _snapshot(folder, "busy", 300_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    query = {
        "spec": SPEC,
        "path": str(path),
        "columns": ["n", "district", "status"],
        "where": {"district": {"eq": "D4"}, "status": {"eq": "closed"}},
        "order_by": [("n", "DESC")],
        "limit": 50,
    }
    expected = pool.run(*PageQuery(**query).page_sql()).rows
    answers: list[list[tuple]] = []
    stop = threading.Event()

    def reads() -> None:
        while not stop.is_set():
            answers.append(pool.run(*PageQuery(**query).page_sql()).rows)

    reader = threading.Thread(target=reads)
    reader.start()
    try:
        table = _hot(pool, path)
        for _ in range(20):
            answers.append(pool.run(*PageQuery(**query, table=table).page_sql()).rows)
    finally:
        stop.set()
        reader.join()
        pool.close()
    assert len(expected) == 51 and all(answer == expected for answer in answers)


def test_a_copy_that_fits_compressed_is_loaded_in_chunks_it_would_outgrow_whole(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's memory is the hot budget plus working memory; a copy loaded whole is uncompressed
    until its checkpoint, so a snapshot whose compressed copy fits could spill and be refused.
    Loaded a chunk at a time, each compressed before the next, it is held."""
    path = _snapshot(folder, "big", 3_000_000)
    compressed = _measured(folder, path)
    budget, working = 2 * compressed, 64 << 20
    assert _plain_copy_bytes(path) > budget + working  # whole, it would not fit DuckDB's memory
    monkeypatch.setattr(duck, "HOT_LOAD_CHUNK_ROWS", 250_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=budget, working_memory_bytes=working)
    try:
        _hot(pool, path)
        assert pool._hot_bytes <= budget
    finally:
        pool.close()


def test_a_query_holding_an_evicted_copy_answers_like_the_file_even_while_it_reloads(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request takes a copy's name (`source`) before its query runs (it may wait for a worker):
    the copy evicted meanwhile, and reloaded chunk by chunk, must not fail the query nor serve
    it a partly loaded table."""
    monkeypatch.setattr(duck, "HOT_LOAD_CHUNK_ROWS", 100_000)
    monkeypatch.setattr(duck, "HOT_EXPANSION", 0.01)  # the budget below holds one measured copy
    first, second = _snapshot(folder, "first", 450_000), _snapshot(folder, "second", 450_000)
    one = _measured(folder, first)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))
    query = {"spec": SPEC, "path": str(first), "columns": ["n", "status"], "order_by": [("n", "DESC")]}
    try:
        expected = [
            pool.run(*PageQuery(**query).count_sql()).rows,
            pool.run(*PageQuery(**query).page_sql()).rows,
        ]
        held = PageQuery(**query, table=_hot(pool, first))
        _hot(pool, second)
        assert str(first) not in pool._hot
        answers = [[pool.run(*held.count_sql()).rows, pool.run(*held.page_sql()).rows]]
        while pool.source(str(first), first.stat().st_size) is None:  # reloading, chunk by chunk
            assert str(first) not in pool._unfit
            answers.append([pool.run(*held.count_sql()).rows, pool.run(*held.page_sql()).rows])
    finally:
        pool.close()
    assert expected[0] == [(450_000,)] and all(answer == expected for answer in answers)


def test_closing_the_pool_stops_a_load_at_its_next_chunk_and_admits_nothing(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() interrupts the load's cursor, but between statements (measuring, or waiting for a
    checkpoint that running queries refuse) there is nothing to interrupt: the load must still
    stop, not load every remaining chunk (a shutdown held for a whole snapshot) and admit it."""
    monkeypatch.setattr(duck, "HOT_LOAD_CHUNK_ROWS", 10_000)
    path = _snapshot(folder, "long", 3_000_000)  # 300 chunks
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    reader = _open_transaction(pool)  # every checkpoint of the hot database waits
    assert pool.source(str(path), path.stat().st_size) is None  # starts the load
    while not pool.run("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'hot_%'").rows[0][0]:
        time.sleep(0.01)
    reader.execute("COMMIT")  # checkpoints now succeed: the load would run on to the end
    reader.close()
    pool.close()
    assert str(path) not in pool._hot and not pool._loading


def test_a_copy_is_counted_at_its_own_size_when_its_checkpoint_also_compresses_another(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy whose checkpoints running queries refused is counted uncompressed; the next load's
    checkpoint compresses it too. That shrinkage is not the new copy's: counted as its share,
    the new copy would be counted at ~nothing and, once the first is evicted, the budget would
    no longer bound memory."""
    monkeypatch.setattr(duck, "CHECKPOINT_PATIENCE_S", 0.0)
    first, second = _snapshot(folder, "first", 600_000), _snapshot(folder, "second", 600_000)
    alone = _measured(folder, second)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        reader = _open_transaction(pool)  # every checkpoint of the hot database waits
        _hot(pool, first)
        reader.execute("COMMIT")
        reader.close()
        _hot(pool, second)
        assert pool._hot[str(second)][1] >= alone * 0.9
        assert pool._hot_bytes >= int(pool.run(IN_MEMORY_BYTES).rows[0][0])
    finally:
        pool.close()


def test_a_copy_that_fits_the_budget_alone_is_loaded_when_the_budget_is_full_of_others(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded beside a budget full of other copies, a copy outgrows DuckDB's memory (budget plus
    working memory) and would be refused for good although it fits the budget alone: room is made
    (least recently used first) before it loads."""
    monkeypatch.setattr(duck, "HOT_LOAD_CHUNK_ROWS", 100_000)
    first, second = _snapshot(folder, "first", 3_000_000), _snapshot(folder, "second", 3_000_000)
    one = _measured(folder, first)
    monkeypatch.setattr(duck, "HOT_EXPANSION", one / second.stat().st_size)  # a true estimate
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5), working_memory_bytes=one)
    try:
        _hot(pool, first)
        _hot(pool, second)
        assert list(pool._hot) == [str(second)] and pool._hot_bytes <= pool.hot_budget_bytes
    finally:
        pool.close()
