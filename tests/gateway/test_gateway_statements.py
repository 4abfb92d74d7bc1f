"""Parsed statements (gateway/statements.py): a SQL text is parsed once and its statement reused,
with every run binding its own parameters; texts that are not one statement, or do not parse,
behave as text does. Through a real `DuckPool` and real DuckDB."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import duckdb
import pytest

from gateway.duck import DuckPool
from gateway.statements import Statements

VALUES = "SELECT * FROM (VALUES (1, 'a', TIMESTAMP '2026-01-01 00:00:00'), (2, 'b', NULL), (3, NULL, TIMESTAMP '2026-03-01 12:00:00')) t(n, s, ts)"  # noqa: E501


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (f"SELECT n, s FROM ({VALUES}) WHERE n >= ? ORDER BY n", [2]),
        (f"SELECT n FROM ({VALUES}) WHERE s = ? OR s IS NULL ORDER BY n", ["a"]),
        (f"SELECT n FROM ({VALUES}) WHERE ts < ? ORDER BY n", [datetime.datetime(2026, 2, 1)]),
        (f"SELECT n FROM ({VALUES}) WHERE n = ANY(?) ORDER BY n", [[1, 3]]),
        (f"SELECT count(*) FROM ({VALUES}) WHERE s IS NOT DISTINCT FROM ?", [None]),
        ("SELECT ? || ?, CAST(? AS DECIMAL(10, 2))", ["x", "y", "1.25"]),
    ],
)
def test_a_parsed_statement_answers_as_its_text(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object]
) -> None:
    statements = Statements()
    statement = statements.parsed(con, sql)
    assert isinstance(statement, duckdb.Statement)
    expected = con.execute(sql, params).fetchall()
    assert con.execute(statement, params).fetchall() == expected
    assert statements.parsed(con, sql) is statement  # the same text: no second parse


def test_each_run_binds_its_own_parameters(con: duckdb.DuckDBPyConnection) -> None:
    statements = Statements()
    sql = f"SELECT n FROM ({VALUES}) WHERE n > ? ORDER BY n"
    answers = [con.execute(statements.parsed(con, sql), [bound]).fetchall() for bound in (0, 1, 2, 3)]
    assert answers == [[(1,), (2,), (3,)], [(2,), (3,)], [(3,)], []]
    assert len(statements) == 1


def test_a_text_of_several_statements_is_run_as_text(con: duckdb.DuckDBPyConnection) -> None:
    statements = Statements()
    sql = "CREATE TEMP TABLE t AS SELECT 41 AS n; SELECT n + 1 FROM t"
    assert statements.parsed(con, sql) == sql
    assert con.execute(statements.parsed(con, sql)).fetchall() == [(42,)]  # both ran


def test_a_text_that_does_not_parse_raises_duckdbs_error_unkept(con: duckdb.DuckDBPyConnection) -> None:
    statements = Statements()
    with pytest.raises(duckdb.ParserException) as caught:
        statements.parsed(con, "SELEC 1")
    with pytest.raises(duckdb.ParserException) as direct:
        con.execute("SELEC 1")
    assert str(caught.value) == str(direct.value)
    assert len(statements) == 0


def test_at_most_entries_are_kept_least_recently_used_dropped(con: duckdb.DuckDBPyConnection) -> None:
    statements = Statements(entries=3)
    kept = statements.parsed(con, "SELECT 0")
    for n in (1, 2):
        statements.parsed(con, f"SELECT {n}")
    assert statements.parsed(con, "SELECT 0") is kept  # used again: now the most recent
    statements.parsed(con, "SELECT 3")  # drops "SELECT 1", the least recently used
    assert len(statements) == 3
    assert statements.parsed(con, "SELECT 0") is kept
    assert statements.parsed(con, "SELECT 1") is not None and len(statements) == 3


def test_the_pool_parses_a_text_once_and_binds_every_run(tmp_path: Path) -> None:
    pool = DuckPool(tmp_path, "key", threads=1)
    try:
        sql = "SELECT cm_pseudonym(?), ? + 1"
        first, second = pool.run(sql, ["a", 1]).rows, pool.run(sql, ["b", 2]).rows
        assert len(pool.statements) == 1
        assert first != second and first[0][1] == 2 and second[0][1] == 3
        assert first == pool.run(sql, ["a", 1]).rows  # the same answer from the reused statement
    finally:
        pool.close()


def test_concurrent_runs_of_shared_statements_each_get_their_own_answer(tmp_path: Path) -> None:
    """Worker threads run the pool's queries at once: eight threads share two statements, and
    every answer is that of its own parameters."""
    pool = DuckPool(tmp_path, "key", threads=2)
    texts = ["SELECT ? * 2 FROM range(50) LIMIT 1", "SELECT ? + 1000 FROM range(50) LIMIT 1"]
    wrong: list[tuple[int, int, object]] = []

    def runner(worker: int) -> None:
        for n in range(200):
            value = worker * 1000 + n
            sql = texts[n % 2]
            got = pool._execute(sql, [value]).rows[0][0]  # no result cache: every run reaches DuckDB
            if got != (value * 2 if n % 2 == 0 else value + 1000):
                wrong.append((worker, n, got))

    try:
        threads = [threading.Thread(target=runner, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert wrong == [] and len(pool.statements) == 2
    finally:
        pool.close()
