"""The metadata store's engines: which errors retire a connection, recovery after a fault, the probe
behind `/readyz`, and the SQLite settings (journal mode, no memory-mapped I/O)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors
from sqlalchemy.exc import IntegrityError, OperationalError

from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.audit.verify import verify_report
from meshcore.store import dispose, get_engine, is_fault, probe
from tests import pg
from tests.store_faults import can_make_unwritable, unwritable


def _record(i: int) -> AccessRecord:
    return AccessRecord(request_id=f"r{i}", action="read", status=200, subject="bob", product="a.b")


def _sqlite_error(code: int, message: str = "x") -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (_sqlite_error(8, "attempt to write a readonly database"), True),  # SQLITE_READONLY
        (_sqlite_error(8 | (1 << 8)), True),  # an extended READONLY code
        (_sqlite_error(10, "disk I/O error"), True),  # SQLITE_IOERR
        (_sqlite_error(14, "unable to open database file"), True),  # SQLITE_CANTOPEN
        (_sqlite_error(13, "database or disk is full"), True),  # SQLITE_FULL
        (_sqlite_error(5, "database is locked"), False),  # SQLITE_BUSY: contention, not a fault
        (_sqlite_error(19, "UNIQUE constraint failed"), False),  # SQLITE_CONSTRAINT
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (pg_errors.AdminShutdown("terminating connection due to administrator command"), True),
        (pg_errors.CannotConnectNow("the database system is starting up"), True),
        (pg_errors.UniqueViolation("duplicate key"), False),
        (pg_errors.LockNotAvailable("could not obtain lock"), False),
        (ValueError("not a database error"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_which_errors_retire_a_connection(error: Exception, fault: bool) -> None:
    assert is_fault(error) is fault
    wrapped = (IntegrityError if not fault else OperationalError)("SQL", None, error)
    assert is_fault(wrapped) is fault


def test_sqlite_journal_mode_comes_from_the_url_and_nothing_is_memory_mapped(tmp_path: Path) -> None:
    for mode in ("wal", "truncate"):
        engine = get_engine(f"sqlite:///{tmp_path / mode}.db?journal_mode={mode}")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == mode
            assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == 0
    with pytest.raises(ValueError, match="journal_mode='off'"):
        get_engine(f"sqlite:///{tmp_path / 'x.db'}?journal_mode=off")


def test_a_connection_opened_while_the_file_was_read_only_is_replaced(tmp_path: Path) -> None:
    """SQLite opens an unwritable file read-only without a word, and such a connection stays
    read-only after the file is writable again: pooled, it failed every write until a restart."""
    if not can_make_unwritable(tmp_path):
        pytest.skip("needs root on a file system with `chattr +i` (CI runs as root)")
    db = tmp_path / "meta" / "metadata.db"
    url = f"sqlite:///{db}"
    log = AccessLog(get_engine(url)).ensure_schema()
    assert log.append([_record(1)]) == [1]
    other = sqlite3.connect(db)  # another process, say: keeps the WAL files in place
    other.execute("SELECT count(*) FROM access_log").fetchall()
    log.engine.dispose()  # the next checkout opens a new connection
    with unwritable([db, db.parent]), log.engine.connect() as conn:  # its WAL files stay writable
        assert conn.exec_driver_sql("SELECT count(*) FROM access_log").scalar() == 1  # opened read-only
        assert probe(log.engine)[0] is False
    other.close()
    assert log.append([_record(2)]) == [2]  # the read-only connection was replaced on its first failure
    assert probe(log.engine) == (True, "sqlite store reachable and writable")
    assert verify_report(log).first_bad is None
    dispose(url)


def test_postgres_probe_and_writes_recover_after_a_server_restart(postgres: pg.PgCluster) -> None:
    cluster = pg.start_cluster()  # its own server: stopping it must not disturb other tests
    try:
        url = cluster.create_database()
        log = AccessLog(get_engine(url)).ensure_schema()
        assert log.append([_record(1)]) == [1]
        cluster.stop("fast")
        ok, detail = probe(log.engine)
        assert not ok and detail.startswith("postgresql store unavailable: OperationalError")
        cluster.start()
        assert log.append([_record(2)]) == [2]  # pooled connections died with the server: replaced
        assert probe(log.engine) == (True, "postgresql store reachable and writable")
        assert verify_report(log).first_bad is None
        dispose(url)
    finally:
        cluster.destroy()


def _create_every_table(url: str, start: Any, results: Any) -> None:
    """A process starting on the store: what the gateway, a build and the CLI create at start-up."""
    from lineage.outbox import Outbox
    from meshcore.catalog import Catalog
    from policies import grants, versions

    engine = get_engine(url)
    start.wait()
    try:
        AccessLog(engine).ensure_schema()
        Catalog(engine, Path("/nonexistent-home")).ensure_schema()
        Outbox(engine).ensure_schema()
        grants.ensure_schema(engine)
        versions.ensure_schema(engine)
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_processes_starting_together_on_a_new_store_create_every_table_once(metadata_url: str) -> None:
    """`civicmesh serve --workers 2` (or two hosts) on a new or upgraded store: each worker finds
    tables missing and creates them; none may fail on the other's CREATE."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    workers = [
        context.Process(target=_create_every_table, args=(metadata_url, start, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(60)
    assert outcomes == ["ok"] * 4, outcomes
