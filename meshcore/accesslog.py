"""The access log: one hash-chained, gap-free record per request and product touched.

Every surface that serves or governs data appends here before it answers (fail closed). Records
carry who, what, under which rule and how much — never a token and never a PII value.

Concurrency: callers in one process share a transaction (group commit: the first waiting thread
becomes the leader and writes everything queued so far); processes sharing the store serialise on
the write lock (`BEGIN IMMEDIATE` on SQLite, a table lock on PostgreSQL). Sequence numbers and the
chain are computed inside that lock, so any number of writers yields one unbroken chain.

Signatures (see `meshcore.seals.checkpoints`): a writer holding the Ed25519 key signs the last
record of every commit in the same transaction (`access_log_seals`), so a record appended without
the key is a forgery; `meshcore.audit.sealing.Sealer` seals the records since the last checkpoint
into a signed, chained checkpoint, delivered to a sink outside this store and copied into
`audit_checkpoints`; `meshcore.audit.verify` checks all of it with the public key alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from meshcore.seals.checkpoints import seal_message
from meshcore.seals.signing import Signer, Verifier, open_signer
from meshcore.seals.sinks import CheckpointSink, open_sink
from meshcore.settings import Settings
from meshcore.store import create_index, create_tables, get_engine, invalidate_on_fault, retry_once

GENESIS_HASH = "0" * 64

metadata = MetaData()

access_log_table = Table(
    "access_log",
    metadata,
    # On SQLite an INTEGER primary key is the rowid: no second copy of seq in an index of its own.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False, index=True),  # ISO-8601 UTC, fixed width: sorts as text
    # Not indexed: no query looks a record up by request id (an index was 5 % of the stored bytes).
    Column("request_id", String(64), nullable=False),
    Column("subject", String(200), nullable=True, index=True),
    Column("roles", Text, nullable=False),  # JSON list of "role@department"
    Column("action", String(32), nullable=False),
    Column("product", String(200), nullable=True, index=True),
    Column("snapshot_id", String(200), nullable=True),
    Column("columns_requested", Text, nullable=False),  # JSON list; null: the same as columns_returned
    Column("columns_returned", Text, nullable=False),  # JSON list
    Column("columns_masked", Text, nullable=False),  # JSON object column -> mask kind
    Column("row_filter", Text, nullable=True),  # JSON {"column", "values"}
    Column("decision", String(16), nullable=False),  # allow | deny | none
    Column("rule", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("policy_version", String(100), nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("bytes", BigInteger, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("client", String(100), nullable=True),
    Column("operation_hash", String(64), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_code", String(32), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Administrative records (policy loads, grants) are read by action over the whole log on every
# `asOf` read and rights question (policies/history.py): without this index each one scanned it.
ACTION_INDEX = Index("ix_access_log_action_seq", access_log_table.c.action, access_log_table.c.seq)

# One Ed25519 signature per commit, over its span and last hash (meshcore.seals.checkpoints).
seals_table = Table(
    "access_log_seals",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # the commit's last record
    Column("first_seq", BigInteger, nullable=False),  # its first record
    Column("signature", String(100), nullable=False),
)

# Copies of the signed checkpoints delivered to the external sink (the sink is the authority).
checkpoints_table = Table(
    "audit_checkpoints",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("body", Text, nullable=False),  # the checkpoint as canonical JSON, exactly as delivered
)

# Before Ed25519 (until 2026-12): HMAC checkpoints under CIVICMESH_AUDIT_KEY. Never created or
# written now; read once, when the first signed checkpoint seals an older log (see sealing.py).
legacy_metadata = MetaData()
legacy_checkpoints_table = Table(
    "access_log_checkpoints",
    legacy_metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("signature", String(64), nullable=False),
)

# The chain head and the last checkpoint, in one round trip (both are primary-key lookups).
_HEAD_SQL = (
    "SELECT seq, hash, (SELECT max(seq) FROM audit_checkpoints) AS checkpoint "
    "FROM access_log ORDER BY seq DESC LIMIT 1"
)

_JSON_FIELDS = ("roles", "columns_requested", "columns_returned", "columns_masked", "row_filter")
_CHAINED_FIELDS = tuple(c.name for c in access_log_table.columns if c.name != "hash")


class AccessLogUnavailable(RuntimeError):
    """The log could not be written: the caller must not serve data (fail closed)."""


def utc_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AccessRecord:
    """One record before it is chained. Lists hold column *names*; values never enter the log."""

    request_id: str
    action: str
    status: int
    decision: str = "none"
    reason: str = ""
    subject: str | None = None
    roles: list[str] = field(default_factory=list)
    product: str | None = None
    snapshot_id: str | None = None
    columns_requested: list[str] = field(default_factory=list)
    columns_returned: list[str] = field(default_factory=list)
    columns_masked: dict[str, str] = field(default_factory=dict)
    row_filter: dict[str, Any] | None = None
    rule: str | None = None
    policy_version: str | None = None
    rows: int | None = None
    bytes: int | None = None
    latency_ms: float | None = None
    client: str | None = None
    operation_hash: str | None = None
    error_code: str | None = None
    ts: str = field(default_factory=utc_timestamp)

    def to_row(self) -> dict[str, Any]:
        # A shallow copy: the JSON fields are serialised right away (asdict's deep copy was
        # a third of an append).
        row = {name: storable(name, getattr(self, name)) for name in _RECORD_FIELDS}
        for name in _JSON_FIELDS:
            value = row[name]
            row[name] = None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))
        if row["columns_requested"] == row["columns_returned"]:
            row["columns_requested"] = "null"  # most reads get what they asked for: stored once
        if row["latency_ms"] is not None:
            row["latency_ms"] = round(float(row["latency_ms"]), 3)
        return row


_RECORD_FIELDS = tuple(f.name for f in fields(AccessRecord))
_LENGTHS = {
    c.name: c.type.length for c in access_log_table.columns if isinstance(c.type, String) and c.type.length
}


def storable(name: str, value: Any) -> Any:
    """`value` of record field `name` as every backend can store it. PostgreSQL refuses a NUL
    (U+0000) in text and a string longer than its VARCHAR(n) column; SQLite takes both. So a text
    is written the same everywhere (and hashed as written): NUL as U+FFFD, cut to its column with a
    final `…`. A caller's value (a product name of 300 characters, or one holding NUL) is recorded
    then, instead of failing the group commit it shares with other requests (HTTP 503 for all)."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    limit = _LENGTHS.get(name)
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return value


def chain_hash(row: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of every stored field except `hash` (prev_hash included)."""
    payload = {name: row.get(name) for name in _CHAINED_FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# Extra writes that must commit atomically with a caller's records (e.g. lineage outbox rows).
TxHook = Callable[[Connection], object]
# Told after each group commit: (seq, hash) of the records committed, and the last checkpoint's seq.
CommitListener = Callable[[list[tuple[int, str]], int], None]


# -- lean inserts on the request path ------------------------------------------------------------
#
# `conn.execute(table.insert(), rows)` spends more time in SQLAlchemy (statement cache key, compiled
# parameter construction, result set-up) than SQLite spends inserting. The per-request writes
# (access-log records, lineage outbox rows) go through `insert_rows` instead: the INSERT is compiled
# once per (dialect, table, columns) with the dialect's own paramstyle, each column type's bind
# processor still applies, and the rows are sent with one `executemany` on the DBAPI cursor of the
# caller's connection, inside its open transaction (SQLite, PostgreSQL: any DBAPI dialect).


@dataclass(frozen=True)
class _InsertPlan:
    sql: str
    names: tuple[str, ...]  # parameter order (positional) or the dict keys (named)
    positional: bool
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]  # (column, bind processor)


_insert_plans: dict[tuple[int, str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]], _InsertPlan] = {}


# A SQL value's text, rendered once per expression object (~16 us each: a per-row-write cost on the
# hot path otherwise). The cache holds the objects, so an id is never reused for another one.
_sql_text = functools.lru_cache(maxsize=64)(str)


def _insert_plan(
    dialect: Dialect, table: Table, columns: tuple[str, ...], sql_values: Mapping[str, Any] | None = None
) -> _InsertPlan:
    sql_values = sql_values or {}
    # Each SQL value by its text (bind-free: checked below), so a column set to another expression
    # gets its own plan, never the first one's.
    said = tuple((name, _sql_text(value)) for name, value in sql_values.items())
    key = (id(table), dialect.name, dialect.driver, dialect.paramstyle, columns, said)
    plan = _insert_plans.get(key)
    if plan is None:
        # inline(): no implicit RETURNING of generated keys (PostgreSQL would add it; nobody reads it)
        statement = table.insert().inline()
        if sql_values:
            statement = statement.values(dict(sql_values))
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        positional = bool(compiled.positional)
        names = tuple(compiled.positiontup or ()) if positional else columns
        # A default or an unexpected bind (e.g. a literal in a SQL value): not a plain insert.
        if set(names) != set(columns) or set(compiled.bind_names.values()) != set(columns):
            raise ValueError(f"cannot plan a plain insert of {columns} into {table.name}")
        processors = []
        for name in columns:
            processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.append((name, processor))
        plan = _insert_plans[key] = _InsertPlan(compiled.string, names, positional, tuple(processors))
    return plan


def fetch_one(conn: Connection, sql: str) -> tuple[Any, ...] | None:
    """The first row of a parameterless SELECT, on the DBAPI cursor of `conn`'s open transaction."""
    dialect = conn.dialect
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        row = cursor.fetchone()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    finally:
        cursor.close()
    return None if row is None else tuple(row)


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    sql_values: Mapping[str, Any] | None = None,
) -> None:
    """INSERT `rows` (dicts with the same keys: column names) in `conn`'s open transaction with one
    DBAPI `executemany`; `sql_values` sets other columns to bind-free SQL expressions evaluated per
    row (ValueError if one holds a bound value). Errors are raised as SQLAlchemy's (e.g.
    `IntegrityError`), as with Core."""
    if not rows:
        return
    dialect = conn.dialect
    plan = _insert_plan(dialect, table, tuple(rows[0]), sql_values)
    if plan.processors:
        rows = [dict(row) for row in rows]
        for row in rows:
            for name, processor in plan.processors:
                row[name] = processor(row[name])
    params: list[Any] = [tuple(row[n] for n in plan.names) for row in rows] if plan.positional else list(rows)
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(plan.sql, params)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            plan.sql, params, exc, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=True
        ) from exc
    finally:
        cursor.close()


@dataclass
class _Batch:
    records: Sequence[AccessRecord]
    also: TxHook | None = None
    seqs: list[int] | None = None
    error: BaseException | None = None
    done: bool = False


class AccessLog:
    """Append, read and verify the log in one metadata store.

    `signer` (the private key) makes this writer seal its commits; without it the records are
    chained but unsigned (tests of other rooms; `civicmesh audit verify` then reports them as not
    signed). `verifier` and `sink` are what `verify()` checks against (the public key, the external
    checkpoint sink). `archive_dir` holds the sealed records moved out of the store
    (`meshcore.audit.archive`): verification and period queries consult it."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        sink: CheckpointSink | None = None,
        archive_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.archive_dir = archive_dir
        self.signer = signer
        self.verifier = verifier or (signer.verifier if signer else None)
        self.sink = sink
        self.listeners: list[CommitListener] = []
        self._cond = threading.Condition()
        self._queue: list[_Batch] = []
        self._writing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessLog:
        """The log of a process that writes: the signing key (created on a first start, its public
        key exported: `open_signer`), and the configured checkpoint sink."""
        signer = open_signer(settings.audit_signing_key_file, settings.audit_public_key_file)
        sink = open_sink(settings.audit_sink)
        engine = get_engine(settings.metadata_url)
        log = cls(engine, signer=signer, sink=sink, archive_dir=settings.audit_archive_dir).ensure_schema()
        create_index(log.engine, ACTION_INDEX)  # a store made before the index existed gets it once
        return log

    def ensure_schema(self) -> AccessLog:
        create_tables(self.engine, metadata)
        return self

    # -- writing ---------------------------------------------------------------------------------

    def append(self, records: Sequence[AccessRecord], also: TxHook | None = None) -> list[int]:
        """Commit `records` (in order, contiguous seqs) and return their sequence numbers.

        `also(conn)` runs inside the same transaction, so e.g. the lineage events of a read are
        durable together with its access-log records (and share the group commit).
        Raises AccessLogUnavailable if the store cannot be written; nothing is half-written.
        """
        if not records:
            return []
        batch = _Batch(records, also)
        with self._cond:
            self._queue.append(batch)
            while not batch.done and self._writing:
                self._cond.wait()
            if batch.done:
                return self._result(batch)
            # Leader: take everything queued so far into one transaction.
            self._writing = True
            taken, self._queue = self._queue, []
        try:
            retry_once(lambda: self._write(taken))  # a broken connection is replaced, once
        except Exception as exc:
            for item in taken:
                item.error = exc
        finally:
            with self._cond:
                for item in taken:
                    item.done = True
                self._writing = False
                self._cond.notify_all()
        return self._result(batch)

    @staticmethod
    def _result(batch: _Batch) -> list[int]:
        if batch.error is not None:
            raise AccessLogUnavailable(f"access log not written: {batch.error}") from batch.error
        assert batch.seqs is not None
        return batch.seqs

    def _write(self, batches: list[_Batch]) -> None:
        with self.engine.connect() as conn:
            try:
                self._lock(conn)
                hashes, checkpoint = self._chain(conn, batches)
                for batch in batches:
                    if batch.also is not None:
                        batch.also(conn)
                conn.commit()
            except BaseException as exc:
                invalidate_on_fault(conn, exc)  # the raw-cursor inserts bypass SQLAlchemy's own check
                with contextlib.suppress(Exception):  # a broken connection cannot roll back
                    conn.rollback()
                for batch in batches:
                    batch.seqs = None
                raise
        for listener in self.listeners:
            listener(hashes, checkpoint)

    def _chain(self, conn: Connection, batches: Sequence[_Batch]) -> tuple[list[tuple[int, str]], int]:
        """Under the write lock: number, chain, insert and seal the batches' records.
        Returns ((seq, hash) of each record, seq of the last checkpoint)."""
        # Plain SQL for the per-commit lookup: building the Core statement cost more than running it.
        last = fetch_one(conn, _HEAD_SQL)  # (seq, hash, checkpoint) or None
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS_HASH)
        checkpoint = int(last[2] or 0) if last else 0
        rows: list[dict[str, Any]] = []
        for batch in batches:
            batch.seqs = []
            for record in batch.records:
                seq += 1
                row = record.to_row()
                row["seq"] = seq
                row["prev_hash"] = prev
                row["hash"] = prev = chain_hash(row)
                rows.append(row)
                batch.seqs.append(seq)
        insert_rows(conn, access_log_table, rows)
        if self.signer is not None:
            first = int(rows[0]["seq"])
            signature = self.signer.sign(seal_message(first, seq, prev))
            insert_rows(conn, seals_table, [{"seq": seq, "first_seq": first, "signature": signature}])
        return [(r["seq"], r["hash"]) for r in rows], checkpoint

    def append_in(self, conn: Connection, records: Sequence[AccessRecord]) -> list[int]:
        """Chain `records` inside the caller's open write transaction on `conn`; the caller commits
        (or rolls back: then the records vanish with its own change, and the chain stays whole).

        For changes that must be logged atomically with their own writes (grants, approvals). The
        store's write lock is taken first (SQLite: a no-op write, which waits on busy_timeout;
        PostgreSQL: the table lock), so the head read below cannot race another writer. Does not
        join the group commit: use it for rare administrative records, not per request.
        """
        if not records:
            return []
        self.lock(conn)
        batch = _Batch(records)
        self._chain(conn, [batch])
        assert batch.seqs is not None
        return batch.seqs

    def lock(self, conn: Connection) -> None:
        """Take the write lock inside the caller's transaction on `conn` (held until it ends)."""
        if conn.dialect.name == "sqlite":
            # A write that changes nothing still takes SQLite's write lock (waiting on busy_timeout);
            # pysqlite opens the transaction before it if none is open yet.
            conn.execute(access_log_table.update().where(access_log_table.c.seq < 0).values(seq=-1))
        else:
            self._lock(conn)

    def _lock(self, conn: Connection) -> None:
        """Take the store's write lock before reading the chain head (cross-process safety)."""
        if conn.dialect.name == "sqlite":
            # pysqlite starts no transaction for a plain BEGIN statement itself, so the explicit
            # BEGIN IMMEDIATE opens it and takes the RESERVED lock; busy_timeout makes others wait.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE access_log IN SHARE ROW EXCLUSIVE MODE")

    # -- reading ---------------------------------------------------------------------------------

    def rows(self, after_seq: int = 0, batch_size: int = 5000) -> Iterator[dict[str, Any]]:
        """Every stored row in seq order, streamed in batches."""
        while True:
            with self.engine.connect() as conn:
                chunk = [
                    dict(r._mapping)
                    for r in conn.execute(
                        select(access_log_table)
                        .where(access_log_table.c.seq > after_seq)
                        .order_by(access_log_table.c.seq)
                        .limit(batch_size)
                    )
                ]
            yield from chunk
            if len(chunk) < batch_size:
                return
            after_seq = int(chunk[-1]["seq"])

    def search(
        self,
        *,
        products: Collection[str] | None,
        subject: str | None = None,
        product: str | None = None,
        decision: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], int]:
        """(page of decoded rows in seq order, total matching). `products=None` means every
        record, including those of no product (401s, catalog queries); otherwise only those products."""
        t = access_log_table
        conditions: list[ColumnElement[bool]] = []
        if products is not None:
            conditions.append(t.c.product.in_(list(products)))
        if subject is not None:
            conditions.append(t.c.subject == subject)
        if product is not None:
            conditions.append(t.c.product == product)
        if decision is not None:
            conditions.append(t.c.decision == decision)
        if since is not None:
            conditions.append(t.c.ts >= utc_timestamp(since))
        if until is not None:
            conditions.append(t.c.ts < utc_timestamp(until))
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(*conditions)).scalar() or 0
            rows = conn.execute(
                select(t).where(*conditions, t.c.seq > after_seq).order_by(t.c.seq).limit(limit)
            ).all()
        return [decode_row(dict(r._mapping)) for r in rows], int(total)

    def latest(self, conn: Connection, action: str) -> dict[str, Any] | None:
        """The newest record of `action`, decoded, read on `conn` (hold the write lock on it to
        be sure no writer adds a newer one meanwhile)."""
        t = access_log_table
        row = conn.execute(select(t).where(t.c.action == action).order_by(t.c.seq.desc()).limit(1)).first()
        return decode_row(dict(row._mapping)) if row is not None else None

    def of_actions(self, actions: Collection[str], until: str | None = None) -> list[dict[str, Any]]:
        """Every record of `actions` (administrative records: few), decoded, in seq order; with
        `until` (a `utc_timestamp`), only those stamped at or before it."""
        t = access_log_table
        query = select(t).where(t.c.action.in_(list(actions)))
        if until is not None:
            query = query.where(t.c.ts <= until)
        with self.engine.connect() as conn:
            return [decode_row(dict(r._mapping)) for r in conn.execute(query.order_by(t.c.seq))]

    def last_allowed(self, also: Collection[str] = ()) -> dict[tuple[str, str | None, str], str]:
        """(subject, product or None, action) -> the newest allowed record's time, over the whole
        log; records of the actions in `also` count whatever their decision."""
        t = access_log_table
        counted = t.c.decision == "allow"
        if also:
            counted = counted | t.c.action.in_(list(also))
        query = (
            select(t.c.subject, t.c.product, t.c.action, func.max(t.c.ts))
            .where(counted, t.c.subject.is_not(None))
            .group_by(t.c.subject, t.c.product, t.c.action)
        )
        with self.engine.connect() as conn:
            rows: Iterable[Any] = conn.execute(query)
            return {(s, p, a): ts for s, p, a, ts in rows}

    def unmasked_reads(self) -> Iterator[dict[str, Any]]:
        """Allowed reads and exports that masked nothing (decoded): where PII may have been seen."""
        t = access_log_table
        query = select(t.c.ts, t.c.subject, t.c.product, t.c.columns_returned, t.c.columns_masked).where(
            t.c.decision == "allow", t.c.action.in_(("read", "export")), t.c.columns_masked == "{}"
        )
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                yield decode_row(dict(row._mapping))

    def head(self) -> int:
        """The last record's seq (0: empty). One primary-key lookup: without the LIMIT, PostgreSQL
        sent every seq to the client on each start and checkpoint."""
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(access_log_table.c.seq))).scalar()
        return int(value or 0)

    def links(self, after_seq: int, limit: int) -> list[tuple[int, str, str]]:
        """(seq, prev_hash, hash) of up to `limit` records after `after_seq`, in seq order."""
        t = access_log_table
        query = select(t.c.seq, t.c.prev_hash, t.c.hash).where(t.c.seq > after_seq).order_by(t.c.seq)
        with self.engine.connect() as conn:
            rows: Iterable[Any] = conn.execute(query.limit(limit))
            return [(int(seq), prev, h) for seq, prev, h in rows]

    def seals(
        self, after_seq: int = 0, upto: int | None = None, limit: int | None = None
    ) -> dict[int, tuple[int, str]]:
        """Commit seals ending in (after_seq, upto], the first `limit` of them: last seq -> (first
        seq, signature)."""
        t = seals_table
        query = select(t.c.seq, t.c.first_seq, t.c.signature).where(t.c.seq > after_seq)
        if upto is not None:
            query = query.where(t.c.seq <= upto)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.seq).limit(limit))
            return {int(r.seq): (int(r.first_seq), r.signature) for r in rows}

    def checkpoints(self, after_index: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """The checkpoints copied into the store (the first `limit` of them), in index order, as
        stored: {idx, seq, body}."""
        t = checkpoints_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.idx > after_index).order_by(t.c.idx).limit(limit)).all()
        return [dict(r._mapping) for r in rows]


def chain_problem(row: dict[str, Any], prev: str, seen: dict[str, int]) -> tuple[str, str] | None:
    """(problem, detail) if `row` does not follow the record whose hash is `prev`, else None."""
    seq = int(row["seq"])
    if chain_hash(row) != row["hash"]:
        # Written as another seq? Then the record was moved (reordered), not edited.
        for other in (seq - 1, seq + 1, *range(max(1, seq - 50), seq + 51)):
            if other != seq and other > 0 and chain_hash({**row, "seq": other}) == row["hash"]:
                return "reordered", f"record {seq} was written as seq {other}"
        return "modified", f"record {seq} does not match its hash (a field was changed)"
    if row["prev_hash"] != prev:
        if row["prev_hash"] in seen:
            return "reordered", f"record {seq} follows seq {seen[row['prev_hash']]}, not seq {seq - 1}"
        return (
            "modified",
            f"record {seq} does not follow record {seq - 1} (records before it were rewritten, "
            "or removed and renumbered)",
        )
    return None


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its JSON fields parsed back (for reports and APIs); a `columns_requested`
    stored as null (the same as `columns_returned`) comes back as that list."""
    out = dict(row)
    for name in _JSON_FIELDS:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    if "columns_requested" in out and out["columns_requested"] is None:
        out["columns_requested"] = out.get("columns_returned")
    return out
