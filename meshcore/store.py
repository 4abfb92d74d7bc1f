"""The relational metadata store: one SQLAlchemy engine per URL (a SQLite file by default, PostgreSQL
by URL, e.g. `postgresql+psycopg://user:password@host/db`).

Recovery without restart: an error that means "this connection, or the database under it, is
unusable" (`is_fault`: SQLite read-only / I/O / cannot-open errors, a PostgreSQL connection that
broke or a server shutting down) invalidates the connection and every pooled connection opened
before it, so the next checkout opens a fresh one; checkouts are pinged first (`pool_pre_ping`).
A write that is safe to repeat (its transaction rolled back as a whole) may run again once through
`retry_once`. So once the fault clears, the store answers again; while it lasts, callers get errors
and fail closed (the gateway answers 503 `UNAVAILABLE`).

SQLite: a connection opened while the file is unwritable stays read-only for its whole life
(SQLite falls back to read-only silently); pooled, such connections failed every later write, long
after the file was writable again, until a restart. Its first failure now retires it. The journal
mode is
the `journal_mode` query parameter of the URL (`sqlite:///path.db?journal_mode=truncate`), default
`wal` (measured: a third of the commit cost of a rollback journal, readers never blocked). In WAL
mode SQLite memory-maps the `-shm` index; if that file turns unwritable under a running process (a
file system remounted read-only after errors, `chattr +i`), the kernel kills the process with SIGBUS
on its next write to the map. Only a rollback journal avoids that: `truncate` (or `persist`,
`delete`) maps nothing, with `mmap_size=0` as well (`locking_mode=EXCLUSIVE` would keep the index
in process memory, but shut out every other process: no second worker, no CLI). See README,
"SQLite and SIGBUS", and tests/gateway/test_gateway_store_recovery.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, overload

from sqlalchemy import Engine, Index, MetaData, create_engine, event, inspect
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError

T = TypeVar("T")

JOURNAL_MODES = ("wal", "truncate", "persist", "delete")
DEFAULT_JOURNAL_MODE = "wal"


def utcnow() -> datetime:
    """Now, in UTC: every time this store holds is UTC."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A datetime read back from the store, in UTC (SQLite returns the stored UTC time without its
    zone; PostgreSQL returns it with one). None stays None."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


SQLITE_BUSY_TIMEOUT_S = 30  # how long a connection waits for another's lock before "database is locked"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()

# SQLite primary result codes after which a connection cannot be trusted to work again: READONLY
# (opened read-only, or the file turned read-only), IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
_SQLITE_FAULTS = {8, 10, 11, 13, 14, 26}
# PostgreSQL: connection exceptions (class 08), and the server going away (admin or crash shutdown,
# starting up or shutting down).
_PG_FAULT_STATES = ("08", "57P01", "57P02", "57P03")


def _sqlite_pragmas(journal_mode: str) -> Callable[[Any, Any], None]:
    def connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # NORMAL is durable across process crashes (WAL: and consistent across power loss).
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # No memory-mapped I/O of the database file: a mapped page of a file that turns
            # unwritable or shrinks under us is a SIGBUS, not an error.
            cursor.execute("PRAGMA mmap_size=0")
            _set_journal_mode(cursor, journal_mode)
        finally:
            cursor.close()

    return connect


def _set_journal_mode(cursor: sqlite3.Cursor, mode: str) -> None:
    """Switch the file to `mode` (WAL is persistent in the file: usually it is there already).

    Switching takes the file's exclusive lock, and SQLite answers "database is locked" at once,
    without its busy handler, while another connection holds the file: processes opening a new store
    together (`civicmesh serve --workers N`) failed at start-up. So try again for as long as the
    busy timeout would wait; switching out of WAL waits until no other process has it open."""
    if cursor.execute("PRAGMA journal_mode").fetchone() == (mode,):
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute(f"PRAGMA journal_mode={mode}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_fault(exc: BaseException) -> bool:
    """True if `exc` (a SQLAlchemy or DBAPI error) means the connection or the database under it is
    unusable, so the connection must be replaced; False for ordinary errors (constraint violations,
    bad SQL, lock timeouts), after which the connection is fine."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # raised without a code (e.g. by this module): judge by the message
            return "readonly" in str(exc) or "unable to open" in str(exc)
        return code & 0xFF in _SQLITE_FAULTS
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith(_PG_FAULT_STATES)
    return False


def _invalidate_on_fault(context: ExceptionContext) -> None:
    if context.original_exception is not None and is_fault(context.original_exception):
        context.is_disconnect = True  # SQLAlchemy invalidates it and the pool's older connections


def invalidate_on_fault(connection: Any, exc: BaseException) -> None:
    """For code that ran SQL on the raw DBAPI cursor (which bypasses SQLAlchemy's error handling):
    if `exc` is a fault, invalidate `connection` and every older pooled connection."""
    if not is_fault(exc):
        return
    try:
        # What SQLAlchemy does for a disconnect: retire every connection of this pool generation.
        connection.engine.pool._invalidate(connection.connection, exc, _checkin=False)
        connection.invalidate(exc)
    except Exception:  # already invalidated or closed: the pool replaces it anyway
        pass


def retry_once(operation: Callable[[], T]) -> T:
    """Run `operation`; if it fails with a fault (see `is_fault`), run it once more on a fresh
    connection. Only for operations that are whole transactions: a failed try left nothing behind."""
    try:
        return operation()
    except Exception as exc:
        if not is_fault(exc):
            raise
    return operation()


def _sqlite_engine(parsed: URL) -> Engine:
    query = dict(parsed.query)
    journal_mode = str(query.pop("journal_mode", DEFAULT_JOURNAL_MODE)).lower()
    if journal_mode not in JOURNAL_MODES:
        raise ValueError(f"journal_mode={journal_mode!r}: choose one of {', '.join(JOURNAL_MODES)}")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed.set(query=query),
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        pool_pre_ping=True,
    )
    event.listen(engine, "connect", _sqlite_pragmas(journal_mode))
    return engine


def get_engine(url: str) -> Engine:
    """Return the process-wide engine for `url`, creating the SQLite folder if needed.

    Raises ValueError for an unknown SQLite `journal_mode`."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "handle_error", _invalidate_on_fault)
        _engines[url] = engine
        return engine


# The key of PostgreSQL's advisory lock held while tables are created (any constant; "civi").
_SCHEMA_LOCK_KEY = 0x63697669


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """`metadata.create_all`, once across processes: gateway workers or hosts starting together on a
    new (or upgraded) store each create every missing table exactly once. Unserialised, two
    processes both found a table missing and the second CREATE failed (SQLite: "table ... already
    exists"; PostgreSQL: a unique violation in `pg_type`), and the worker died at start-up.

    Nothing missing: reads only, so a read-only store still opens. Else one transaction holding the
    store's write lock (SQLite `BEGIN IMMEDIATE`; PostgreSQL a transaction-scoped advisory lock,
    its DDL being transactional) in which `create_all` checks again and creates what is missing."""
    with engine.connect() as conn:
        found = inspect(conn)
        if all(found.has_table(t.name, schema=t.schema) for t in metadata.sorted_tables):
            return
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite opens none for DDL by itself
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
        metadata.create_all(conn)


def create_index(engine: Engine, index: Index) -> None:
    """Create `index` on a store made before it existed (reads only when it is there already, so a
    read-only store still opens); `create_tables` makes it with new tables."""
    table = index.table
    if table is None:
        raise ValueError(f"index {index.name} is bound to no table")
    with engine.connect() as conn:
        names = {i["name"] for i in inspect(conn).get_indexes(table.name)}
    if index.name not in names:
        with engine.begin() as conn:
            index.create(conn, checkfirst=True)


def probe(engine: Engine) -> tuple[bool, str]:
    """Is the store reachable and writable right now? (ok, detail) from one write transaction that
    changes nothing (SQLite: takes the write lock; PostgreSQL: a round trip in a read-write
    transaction). Never raises: an error is (False, what failed)."""
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                _check_sqlite_files(engine)  # before touching the WAL index of an unwritable file
                # Rewriting the header field with its own value: a real write, fails when read-only.
                version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
                conn.exec_driver_sql(f"PRAGMA user_version = {version}")
            else:
                read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
                if read_only == "on":
                    return False, "the PostgreSQL server is read-only (a standby?)"
        return True, f"{engine.dialect.name} store reachable and writable"
    except Exception as exc:
        return False, f"{engine.dialect.name} store unavailable: {type(exc).__name__}: {_first_line(exc)}"


def _check_sqlite_files(engine: Engine) -> None:
    """The database and the files beside it (journal, WAL, its index) must be writable."""
    database = engine.url.database
    if not database or database == ":memory:":
        return
    path = Path(database)
    for candidate in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        if candidate.exists() and not os.access(candidate, os.W_OK):
            raise sqlite3.OperationalError(f"{candidate.name} is not writable")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else ""


def dispose(url: str) -> None:
    """Close the pooled connections of `url`'s engine and forget it (tests, after a schema is dropped)."""
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def dispose_all() -> None:
    """Close every pooled connection (tests, and before a fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
