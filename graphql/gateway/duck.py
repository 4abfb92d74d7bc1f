"""One shared, locked-down in-memory DuckDB per process; a cursor per query, run off the event loop.

Opening a connection costs ~13 ms, so one is opened at start-up and each query takes a cursor
(cheap, shares the database and its registered functions). The connection can read only the
snapshots folder and their local copies (gateway/copies.py), and cannot change its own
configuration afterwards. The files it reads are
checked against their published checksums first (`DuckPool.checks`, see gateway/integrity.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import hmac
import itertools
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import duckdb

from gateway.copies import COPY_RETRY_SECONDS, COPY_TABLE, Backoff, CopyInterrupted, SnapshotCopies, copy_name
from gateway.deadlines import Deadlines
from gateway.errors import UNAVAILABLE, GovernedError, limit_exceeded
from gateway.integrity import FileChecks, FileStat, file_stat
from gateway.statements import Statements
from meshcore.settings import DEFAULT_SNAPSHOT_MEMORY_MB, snapshot_copies_dir
from meshcore.snapshots import FileOrder, file_order, quote_literal, repeated_values

log = logging.getLogger(__name__)

# Hot snapshots are read from local DuckDB copies (gateway/copies.py), one file per snapshot shared
# by the host's workers, each attached READ_ONLY under its own name.
# Expected copy size / Parquet size, to decide before building whether a copy can fit the budget.
HOT_EXPANSION = 1.3
# DuckDB's memory for running queries (sorts, hash tables, results) beside the blocks of the copies
# it caches: the database's memory_limit is the hot budget plus this.
WORKING_MEMORY_BYTES = 768 << 20
# A hot copy's reference: the snapshot path's digest and the attach's number, so a re-attach of an
# evicted copy never reuses the name a queued query may still hold (`DuckPool.run`).
_HOT_TABLE = re.compile(rf'"hot_([0-9a-f]{{20}})_[0-9]+"\.{COPY_TABLE}')
PSEUDONYM_FUNCTION = "cm_pseudonym"
PSEUDONYM_INT_FUNCTION = "cm_pseudonym_int"
# The order rows that tie on everything a reader may sort by are paged in (`gateway.query.ROW_SHUFFLE`):
# a keyed pseudonym of the file row number, by DuckDB's own (vectorised) SHA-256, keyed per file.
# - stable within a snapshot: the key depends on the mask key and the file's name only (a snapshot's is
#   its checksum), so a hot copy and its file, and every page, share one order;
# - different per file: one function of the row number for every file would let a reader who pages
#   files of different lengths learn which values belong to the first rows of a file (the values of
#   a 60-row file are those of rows 0..59 of any file), and so where a row sits in it;
# - shows nothing of the file's order and is not computable by a reader: SHA-256(k_f || decimal row
#   number) with k_f secret and of fixed length, and messages of digits only (no message is a length
#   extension of another), is a PRF (as NMAC, on SHA-256's compression function); readers see its
#   first 56 bits in cursors, never k_f.
# k_f never appears in SQL text: queries carry a `RowShuffleKey` naming the file among their
# parameters, and the pool binds k_f in its place only as it hands the statement to DuckDB
# (`DuckPool._bind`): SQL, parameters, the result cache, logs and errors hold the file name only.
# (DuckDB's EXPLAIN and profiler print bound values: no surface may offer them for these queries.)
ROW_SHUFFLE_SQL = "CAST('0x' || left(sha256(? || CAST(file_row_number AS VARCHAR)), 14) AS BIGINT)"
_SHUFFLE_KEY_HEX = 32  # k_f: 128 bits as hex, so k_f and a row number fit one SHA-256 block (~40% faster)


@dataclass(frozen=True)
class RowShuffleKey:
    """Stands for the row-shuffle key of snapshot file `file` (its name) among a query's bound
    parameters, for the one `?` of `ROW_SHUFFLE_SQL`; `DuckPool` binds the key in its place."""

    file: str


@functools.lru_cache(maxsize=4096)
def resolved(path: str) -> str:
    """Snapshot file `path` with its links resolved, as the pool's `allowed_directories` and hot
    copies name it; once per path per process (a realpath is a system call per path component,
    ~0.1 ms on every read). Snapshot files are immutable and named by their checksum."""
    return str(Path(path).resolve())


def parquet_source(path: str, row_number: bool = True) -> str:
    """The SQL relation reading snapshot file `path` (a catalog path, never user input), with its
    `file_row_number` column when `row_number`: what hot copies hold, so a copy and its file answer
    the same query alike (`PageQuery`, hot loads, and queries rerouted from an evicted copy)."""
    extra = ", file_row_number = true" if row_number else ""
    return f"read_parquet({quote_literal(path)}{extra})"


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def _pseudonymiser(key: bytes):
    # The key lives only in this closure, never in SQL text, so a query cannot reveal it.
    # HMAC's keyed inner/outer state is computed once; each value copies it (~3x cheaper per row).
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def pseudonym(value: str | None) -> str | None:
        if value is None:
            return None
        mac = keyed.copy()
        mac.update(value.encode())
        return "p_" + mac.hexdigest()[:20]

    def pseudonym_int(value: int | None) -> int | None:
        if value is None:
            return None
        mac = keyed.copy()
        mac.update(str(value).encode())
        return int.from_bytes(mac.digest()[:7], "big")  # < 2**56: fits BIGINT and stays positive

    return pseudonym, pseudonym_int


def _row_shuffle_keys(key: bytes):
    """file name -> k_f = HMAC-SHA256(shuffle key, file name) as 32 hex digits, the shuffle key
    being HMAC-SHA256(mask key, "civicmesh row shuffle"): apart from the masks' pseudonyms."""
    shuffled = hmac.new(hmac.digest(key, b"civicmesh row shuffle", "sha256"), digestmod=hashlib.sha256)

    def row_shuffle_key(file: str) -> str:
        mac = shuffled.copy()
        mac.update(file.encode())
        return mac.hexdigest()[:_SHUFFLE_KEY_HEX]

    return row_shuffle_key


@contextlib.contextmanager
def _withheld(keys: Sequence[str]) -> Iterator[None]:
    """Re-raise a DuckDB error whose message holds a bound row-shuffle key (DuckDB may print a
    statement's expressions with their bound values) without it, and without the original."""
    try:
        yield
    except duckdb.Error as exc:
        if any(key in str(exc) for key in keys):
            raise type(exc)("DuckDB's message quoted a secret bound value; withheld") from None
        raise


def _cells(result: QueryResult) -> int:
    return max(1, len(result.rows)) * max(1, len(result.columns))


def _connect(
    readable: Sequence[Path], mask_key: str, threads: int, memory_limit: str
) -> duckdb.DuckDBPyConnection:
    """The process's in-memory database: the pseudonym functions of the masks, reads only under
    the `readable` folders (snapshots, their copies), no other external access, and a
    configuration locked against queries."""
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    pseudonym, pseudonym_int = _pseudonymiser(mask_key.encode())
    con.create_function(  # type: ignore[call-overload]  # duckdb's stub lacks this overload
        PSEUDONYM_FUNCTION, pseudonym, ["VARCHAR"], "VARCHAR", null_handling="special", side_effects=False
    )
    con.create_function(  # type: ignore[call-overload]  # duckdb's stub lacks this overload
        PSEUDONYM_INT_FUNCTION,
        pseudonym_int,
        ["BIGINT"],
        "BIGINT",
        null_handling="special",
        side_effects=False,
    )
    # SET takes no bound parameters; the paths are ours. Order matters: allowed_directories must
    # be set while external access is still on.
    allowed = ", ".join(quote_literal(str(folder.resolve()).rstrip("/") + "/") for folder in readable)
    con.execute(f"SET allowed_directories = [{allowed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET parquet_metadata_cache = true")
    # Results without ORDER BY keep the order rows are stored in (DuckDB's default, pinned here):
    # pages read in a snapshot's stored order rely on it (`PageQuery.presorted`).
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET lock_configuration = true")
    return con


@dataclass
class _Load:
    """A background attach: its cursor on the pool's database, and the copy's builder while one
    runs; both interrupted by `DuckPool.close` (closing the database under a running statement
    aborts the process: ARCHITECTURE §2b)."""

    cursor: duckdb.DuckDBPyConnection
    thread: threading.Thread = dataclasses.field(init=False)
    builder: duckdb.DuckDBPyConnection | None = None

    def building(self, builder: duckdb.DuckDBPyConnection | None) -> None:
        self.builder = builder

    def interrupt(self) -> None:
        for connection in (self.cursor, self.builder):
            if connection is not None:
                with contextlib.suppress(duckdb.Error):  # closed by its load meanwhile: it ended
                    connection.interrupt()


class DuckPool:
    """The process's DuckDB database; at most `workers` queries run at once (in worker threads)."""

    def __init__(
        self,
        snapshots_dir: Path,
        mask_key: str,
        threads: int = 2,
        workers: int = 8,
        cache_entries: int = 1024,
        cache_max_rows: int = 2000,
        cache_max_cells: int = 1_000_000,
        timeout_seconds: float = 10.0,
        hot_budget_bytes: int = DEFAULT_SNAPSHOT_MEMORY_MB << 20,
        working_memory_bytes: int = WORKING_MEMORY_BYTES,
        copies_dir: Path | None = None,
        copy_retry_seconds: float = COPY_RETRY_SECONDS,
    ) -> None:
        copies_dir = copies_dir or snapshot_copies_dir(snapshots_dir)
        # The copies folder is made by the first build (`SnapshotCopies.ensure`): a home where it
        # cannot be (read-only, full) only leaves every snapshot read from its file.
        snapshots_dir.mkdir(parents=True, exist_ok=True)
        memory_limit = f"{(hot_budget_bytes + working_memory_bytes) >> 20}MiB"
        self._con = _connect((snapshots_dir, copies_dir), mask_key, threads, memory_limit)
        self._row_shuffle_key = _row_shuffle_keys(mask_key.encode())
        self.threads = threads
        self._limiter = anyio.CapacityLimiter(workers)
        self.timeout_seconds = timeout_seconds
        # Hot snapshots: local DuckDB copies (gateway/copies.py; faster scans than Parquet),
        # attached LRU within a budget (Settings.snapshot_memory_budget_bytes) counted at their
        # file size. A snapshot that does not fit is read from its Parquet file, as is one whose
        # copy failed, until its copy is tried again (`_unfit`: copies.Backoff).
        self.hot_budget_bytes = hot_budget_bytes
        copy_key = hmac.digest(mask_key.encode(), b"civicmesh snapshot copy", "sha256")
        self.copies = SnapshotCopies(copies_dir, copy_key, threads, f"{working_memory_bytes >> 20}MiB")
        self._hot: OrderedDict[str, tuple[str, int]] = OrderedDict()  # path -> (table, bytes)
        self._hot_bytes = 0
        self._unfit = Backoff(copy_retry_seconds)
        self._paths: dict[str, str] = {}  # path digest -> path, of every snapshot ever loaded
        self._orders: dict[str, FileOrder] = {}  # path -> the order its file states (`file_order`)
        self._repeated: set[tuple[str, str]] = set()  # (path, column): found to repeat a value
        self._loads = itertools.count()
        # Each background load owns its connection (a cursor) and is interrupted and joined by
        # close(): closing the database under a running load aborts the process (ARCHITECTURE §2b).
        self._loading: dict[str, _Load] = {}
        self._closed = False
        self._hot_lock = threading.Lock()
        self._load_lock = threading.Lock()
        # Result cache. Every query reads an immutable snapshot file named in its SQL, and the SQL
        # and parameters carry the caller's masks and row filter, so (sql, params) identifies the
        # result exactly and an entry never goes stale: no invalidation needed.
        self._cache: OrderedDict[tuple[str, str], QueryResult] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_max_rows = cache_max_rows
        self._cache_max_cells = cache_max_cells  # rows x columns held: the memory bound
        self._cache_cells = 0
        self.cache_hits = 0
        # Every snapshot file is checked against its published checksum before this process first
        # reads it (gateway.integrity.ensure_intact, on every read path and exports).
        self.checks = FileChecks()
        self._deadlines = Deadlines()
        self.statements = Statements()  # each SQL text parsed once (gateway/statements.py)

    def run(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run `sql` with the query deadline. A hot copy it names that was evicted after `source`
        gave it out (the query waited for a worker) is read from its Parquet file instead. A query
        that fails on hot copies in any other way (DuckDB's block checksums caught a copy damaged
        on disk since its check) is run again on their files, and if those answer, the copies are
        given up by this process (`_give_up`): a derived copy never breaks a snapshot's reads."""
        try:
            return self._run(sql, params)
        except duckdb.IOException as exc:  # e.g. a snapshot file removed after its grace period
            raise GovernedError("The snapshot could not be read; try again later.", UNAVAILABLE) from exc

    def _run(self, sql: str, params: Sequence[Any]) -> QueryResult:
        try:
            return self._execute(sql, params)
        except duckdb.CatalogException:
            from_file = self._from_files(sql)
            if from_file is None:
                raise
            return self._execute(from_file, params)
        except duckdb.Error:  # not a timeout: `_execute` turns those into LIMIT_EXCEEDED
            from_files = self._from_files(sql, every=True)
            if from_files is None:
                raise
            result = self._execute(from_files, params)  # the files' own error if they fail too
            self._give_up(sql)
            return result

    def _from_files(self, sql: str, every: bool = False) -> str | None:
        """`sql` reading each evicted hot copy it names (`every`: each hot copy) from the copy's
        Parquet file (the same rows and order, `file_row_number` included), or None if none."""
        with self._hot_lock:
            served = {table for table, _ in self._hot.values()}
            paths = dict(self._paths)

        def file(match: re.Match[str]) -> str:
            if (match[0] in served and not every) or match[1] not in paths:
                return match[0]
            return parquet_source(paths[match[1]])

        rerouted = _HOT_TABLE.sub(file, sql)
        return rerouted if rerouted != sql else None

    def _give_up(self, sql: str) -> None:
        """Detach the hot copies `sql` names: their snapshots are read from their files until the
        copy is tried again (`_unfit`), when it is checked, found damaged and rebuilt."""
        named = {match[0] for match in _HOT_TABLE.finditer(sql)}
        with self._hot_lock:
            given = [(path, table) for path, (table, _) in self._hot.items() if table in named]
            for path, _ in given:
                self._hot_bytes -= self._hot.pop(path)[1]
                self._unfit.failed(path)
                self.copies.distrust(path)
        for path, table in given:
            log.warning("the local copy of %s failed a query its file answered: read from the file", path)
            with contextlib.closing(self._con.cursor()) as cursor:
                cursor.execute(f"DETACH DATABASE IF EXISTS {table.rsplit('.', 1)[0]}")

    def _bind(self, params: Sequence[Any]) -> tuple[list[Any], list[str]]:
        """`params` with each `RowShuffleKey` replaced by its file's key, and the keys bound."""
        keys = {p.file: self._row_shuffle_key(p.file) for p in params if isinstance(p, RowShuffleKey)}
        bound = [keys[p.file] if isinstance(p, RowShuffleKey) else p for p in params]
        return bound, list(keys.values())

    def _execute(self, sql: str, params: Sequence[Any]) -> QueryResult:
        cursor = self._con.cursor()
        bound, keys = self._bind(params)
        # Interrupted inside DuckDB when it runs too long, freeing its thread and memory.
        watched = self._deadlines.watch(cursor, self.timeout_seconds)
        try:
            with _withheld(keys):
                cursor.execute(self.statements.parsed(cursor, sql), bound)
            columns = [d[0] for d in cursor.description or ()]
            return QueryResult(columns=columns, rows=cursor.fetchall())
        except duckdb.InterruptException as exc:
            raise limit_exceeded(f"The query took longer than {self.timeout_seconds:g} s.") from exc
        finally:
            self._deadlines.done(watched)
            cursor.close()

    def source(self, path: str, byte_size: int) -> str | None:
        """The attached copy of snapshot `path`, as a quoted SQL reference
        (`"hot_<sha256 of path, 20 hex>_<attach number>".snapshot`), or None (read the Parquet
        file) while it is not attached; the first use of a snapshot expected to fit the budget
        starts attaching it (building the host's copy first if no worker has)."""
        with self._hot_lock:
            entry = self._hot.get(path)
            if entry is not None:
                self._hot.move_to_end(path)
                return entry[0]
            estimate = int(byte_size * HOT_EXPANSION)
            if (
                self._closed
                or path in self._loading
                or self._unfit.waiting(path)
                or estimate > self.hot_budget_bytes
            ):
                return None
            digest = copy_name(path)
            self._paths[digest] = path
            alias = f'"hot_{digest}_{next(self._loads)}"'
            # The file as this process's integrity check hashed it (`ensure_intact`, on every read
            # path; as found now for callers that check nothing, e.g. `product preview`): the
            # build, maybe minutes later, copies it only if it is still that file.
            checked = self.checks.verified.get(path) or file_stat(path)
            load = _Load(self._con.cursor())
            load.thread = threading.Thread(
                target=self._load, args=(path, alias, load, checked), name="duck-hot", daemon=True
            )
            self._loading[path] = load
        load.thread.start()
        return None

    def _load(self, path: str, alias: str, load: _Load, checked: FileStat | None) -> None:
        try:
            self.read_file_order(path, load.cursor)  # the copy keeps it: written in file order
            # One copy at a time per process (each build takes working memory); in budget order.
            with self._load_lock:
                if self._closed:  # queued behind a build that close() interrupted
                    raise CopyInterrupted
                copy = self.copies.ensure(
                    path,
                    parquet_source(path),
                    lambda: checked is not None and file_stat(path) == checked,
                    lambda: self._closed,
                    load.building,
                )
                size = copy.stat().st_size
                if size > self.hot_budget_bytes:
                    raise MemoryError(f"its copy ({size >> 20} MiB) exceeds the hot budget")
                if self._closed:
                    raise CopyInterrupted
                self._evict(load.cursor, size)
                load.cursor.execute(f"ATTACH {quote_literal(copy)} AS {alias} (READ_ONLY)")
                with self._hot_lock:
                    self._hot[path] = (f"{alias}.{COPY_TABLE}", size)
                    self._hot_bytes += size
                    self._unfit.succeeded(path)
        except CopyInterrupted:
            pass
        except Exception as exc:  # a failed copy only means the file keeps being read directly
            if not self._closed:  # close() interrupts builds on purpose
                with self._hot_lock:
                    wait = self._unfit.failed(path)  # e.g. no room: not tried again on every read
                log.warning(
                    "no local copy of %s (read from its file, tried again in %.0f s): %s", path, wait, exc
                )
        finally:
            with self._hot_lock:
                self._loading.pop(path, None)
            load.cursor.close()

    async def file_order(self, path: str, key: str | None = None) -> FileOrder:
        """The order snapshot `path` stores its rows in, its hot copy and its file alike, as its
        file states it (`meshcore.snapshots.file_order`), with `key` among its unique columns if
        no two rows share a value of it: read and checked once per file, off the event loop."""
        known = self._orders.get(path)
        if known is not None and self._key_known(path, known, key):
            return known
        return await anyio.to_thread.run_sync(self.read_file_order, path, None, key)

    def _key_known(self, path: str, order: FileOrder, key: str | None) -> bool:
        return key is None or key in order.unique or (path, key) in self._repeated

    def read_file_order(
        self, path: str, cursor: duckdb.DuckDBPyConnection | None = None, key: str | None = None
    ) -> FileOrder:
        """`file_order` in this thread. A file that does not state `key` unique (written before
        builds checked keys) is checked here, once (a GROUP BY over the file). FileOrder() (no
        order, may depend on any column, nothing unique) if the file cannot be read, not kept: the
        next read tries again."""
        known = self._orders.get(path)
        if known is not None and self._key_known(path, known, key):
            return known
        reader = cursor or self._con.cursor()
        try:
            order = known or file_order(reader, path)
            if not self._key_known(path, order, key):
                assert key is not None
                if repeated_values(reader, parquet_source(path, row_number=False), key):
                    with self._hot_lock:
                        self._repeated.add((path, key))
                else:
                    order = dataclasses.replace(order, unique=order.unique | {key})
        except duckdb.Error as exc:
            log.warning("could not read the stated order of %s: %s", path, exc)
            return known or FileOrder()
        finally:
            if cursor is None:
                reader.close()
        with self._hot_lock:
            self._orders[path] = order
        return order

    def _evict(self, cursor: duckdb.DuckDBPyConnection, room: int) -> None:
        """Detach the least recently used copies until `room` more bytes fit the budget. Their
        files stay for the host's other workers (removed with their snapshot: `copies.sweep`)."""
        evicted: list[str] = []
        with self._hot_lock:
            while self._hot and self._hot_bytes + room > self.hot_budget_bytes:
                _, (old, old_size) = self._hot.popitem(last=False)
                self._hot_bytes -= old_size
                evicted.append(old.rsplit(".", 1)[0])
        for alias in evicted:  # safe with queries in flight: a running scan keeps its database
            cursor.execute(f"DETACH DATABASE IF EXISTS {alias}")

    def open_reader(self, sql: str, params: Sequence[Any], batch_rows: int) -> tuple[Any, Any]:
        """(cursor, Arrow record-batch reader) for streaming a large result; close the cursor after.
        No timeout here: an export may legitimately run long, and it streams as it goes."""
        cursor = self._con.cursor()
        bound, keys = self._bind(params)
        try:
            # A relation's reader streams without the extra copy a DB-API result's reader makes.
            with _withheld(keys):
                return cursor, cursor.sql(sql, params=bound).to_arrow_reader(batch_rows)
        except Exception:
            cursor.close()
            raise

    async def run_async(self, sql: str, params: Sequence[Any] = ()) -> QueryResult:
        """Run in a worker thread (DuckDB releases the GIL, so the event loop keeps serving),
        or answer from the result cache. Only called on the event loop: the cache needs no lock."""
        key = (sql, repr(list(params)))
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return cached
        result = await anyio.to_thread.run_sync(self.run, sql, params, limiter=self._limiter)
        if len(result.rows) <= self._cache_max_rows and self._cache_entries > 0 and key not in self._cache:
            self._cache[key] = result
            self._cache_cells += _cells(result)
            while len(self._cache) > self._cache_entries or self._cache_cells > self._cache_max_cells:
                _, evicted = self._cache.popitem(last=False)
                self._cache_cells -= _cells(evicted)
        return result

    def memory_report(self) -> str:
        """What the hot budget holds, for `/readyz` (a copy is only a speed-up: never a reason to
        be unready): "2 snapshots in local copies (45 MiB of 512 MiB), 1 loading, 0 read from
        their files (no copy); queries on 2 DuckDB threads"."""
        with self._hot_lock:
            held, used, loading, unfit = len(self._hot), self._hot_bytes, len(self._loading), len(self._unfit)
        return (
            f"{held} snapshot{'s' if held != 1 else ''} in local copies ({used >> 20} MiB of "
            f"{self.hot_budget_bytes >> 20} MiB), {loading} loading, "
            f"{unfit} read from their files (no copy); "
            f"queries on {self.threads} DuckDB thread{'s' if self.threads != 1 else ''}"
        )

    def close(self) -> None:
        """Stop background loads (interrupt each until it ends), then close the database."""
        with self._hot_lock:
            self._closed = True
            loaders = list(self._loading.values())
        # Again until they end: an interrupt that lands before a statement starts is lost (DuckDB
        # clears it as a query begins), e.g. as a load hands over its builder.
        while loaders := [load for load in loaders if load.thread.is_alive()]:
            for load in loaders:
                load.interrupt()
            loaders[0].thread.join(0.05)
        self._con.close()
