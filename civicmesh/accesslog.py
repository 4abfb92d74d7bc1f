"""The access log: one hash-chained, gap-free record per request and product touched.

Every surface that serves or governs data appends here before it answers (fail closed). Records
carry who, what, under which rule and how much — never a token and never a PII value.

Concurrency: callers in one process share a transaction (group commit: the first waiting thread
becomes the leader and writes everything queued so far); processes sharing the store serialise on
the write lock (`BEGIN IMMEDIATE` on SQLite, a table lock on PostgreSQL). Sequence numbers and the
chain are computed inside that lock, so any number of writers yields one unbroken chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError

from civicmesh.settings import Settings
from civicmesh.store import get_engine, invalidate_on_fault, retry_once

GENESIS_HASH = "0" * 64

metadata = MetaData()

access_log_table = Table(
    "access_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False, index=True),  # ISO-8601 UTC, fixed width: sorts as text
    Column("request_id", String(64), nullable=False, index=True),
    Column("subject", String(200), nullable=True, index=True),
    Column("roles", Text, nullable=False),  # JSON list of "role@department"
    Column("action", String(32), nullable=False),
    Column("product", String(200), nullable=True, index=True),
    Column("snapshot_id", String(200), nullable=True),
    Column("columns_requested", Text, nullable=False),  # JSON list
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

# Signed checkpoints: every CHECKPOINT_INTERVAL records the head (seq, hash) is signed with a key
# the store does not hold, so truncating the newest records (which leaves a valid shorter chain)
# is detected as soon as a checkpoint names a record that is gone.
CHECKPOINT_INTERVAL = 100

checkpoints_table = Table(
    "access_log_checkpoints",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("signature", String(64), nullable=False),
)

# The chain head and the last checkpoint, in one round trip (both are primary-key lookups).
_HEAD_SQL = (
    "SELECT seq, hash, (SELECT max(seq) FROM access_log_checkpoints) AS checkpoint "
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
        row = {name: getattr(self, name) for name in _RECORD_FIELDS}
        for name in _JSON_FIELDS:
            value = row[name]
            row[name] = None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))
        if row["latency_ms"] is not None:
            row["latency_ms"] = round(float(row["latency_ms"]), 3)
        return row


_RECORD_FIELDS = tuple(f.name for f in fields(AccessRecord))


def chain_hash(row: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON of every stored field except `hash` (prev_hash included)."""
    payload = {name: row.get(name) for name in _CHAINED_FIELDS}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


# Extra writes that must commit atomically with a caller's records (e.g. lineage outbox rows).
TxHook = Callable[[Connection], object]


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


_insert_plans: dict[tuple[int, str, str, str, tuple[str, ...]], _InsertPlan] = {}


def _insert_plan(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> _InsertPlan:
    key = (id(table), dialect.name, dialect.driver, dialect.paramstyle, columns)
    plan = _insert_plans.get(key)
    if plan is None:
        # inline(): no implicit RETURNING of generated keys (PostgreSQL would add it; nobody reads it)
        compiled = table.insert().inline().compile(dialect=dialect, column_keys=list(columns))
        positional = bool(compiled.positional)
        names = tuple(compiled.positiontup or ()) if positional else columns
        if set(names) != set(columns):  # a default or an unexpected bind: not a plain insert
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


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys: column names) in `conn`'s open transaction with one
    DBAPI `executemany`. Errors are raised as SQLAlchemy's (e.g. `IntegrityError`), as with Core."""
    if not rows:
        return
    dialect = conn.dialect
    plan = _insert_plan(dialect, table, tuple(rows[0]))
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


def sign_checkpoint(key: bytes, seq: int, chain_hash_value: str, ts: str) -> str:
    return hmac.new(key, f"{seq}|{chain_hash_value}|{ts}".encode(), hashlib.sha256).hexdigest()


class AccessLog:
    def __init__(
        self,
        engine: Engine,
        checkpoint_key: str | None = None,
        checkpoint_interval: int = CHECKPOINT_INTERVAL,
    ) -> None:
        self.engine = engine
        self.checkpoint_key = checkpoint_key.encode() if checkpoint_key else None
        self.checkpoint_interval = checkpoint_interval
        self._cond = threading.Condition()
        self._queue: list[_Batch] = []
        self._writing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessLog:
        key = settings.audit_key
        return cls(get_engine(settings.metadata_url), checkpoint_key=key).ensure_schema()

    def ensure_schema(self) -> AccessLog:
        metadata.create_all(self.engine)
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
                self._chain(conn, batches)
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

    def _chain(self, conn: Connection, batches: Sequence[_Batch]) -> None:
        """Under the write lock: number, chain and insert the batches' records (and checkpoint)."""
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
        self._maybe_checkpoint(conn, seq, prev, checkpoint)

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

    def _maybe_checkpoint(self, conn: Connection, head_seq: int, head_hash: str, last: int) -> None:
        """Inside the write transaction: sign the head if `interval` records passed since the last
        checkpoint (`last`, read with the head under the same lock)."""
        if self.checkpoint_key is None:
            return
        if head_seq - last < self.checkpoint_interval:
            return
        ts = utc_timestamp()
        conn.execute(
            checkpoints_table.insert().values(
                seq=head_seq,
                hash=head_hash,
                ts=ts,
                signature=sign_checkpoint(self.checkpoint_key, head_seq, head_hash, ts),
            )
        )

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
        conditions = []
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

    def head(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(access_log_table.c.seq).order_by(access_log_table.c.seq.desc())
            ).first()
        return int(value.seq) if value else 0

    def checkpoints(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(checkpoints_table).order_by(checkpoints_table.c.seq)).all()
        return [dict(r._mapping) for r in rows]

    def verify(self) -> int | None:
        """The first sequence number whose record was modified, deleted, inserted, reordered or
        truncated away; None if the chain is whole.

        Truncation is caught up to the last signed checkpoint (at most `checkpoint_interval`
        records can vanish unnoticed from the very end); with no key, checkpoints are not checked.
        """
        return self.verify_report().first_bad

    def verify_report(self) -> ChainCheck:
        """`verify()` with the diagnosis: what is wrong at the first bad record, and the head."""
        marks: dict[int, str] = {}
        found: list[tuple[int, str, str]] = []  # (seq, problem, detail); the earliest wins
        if self.checkpoint_key is not None:
            for cp in self.checkpoints():
                seq = int(cp["seq"])
                good = sign_checkpoint(self.checkpoint_key, seq, cp["hash"], cp["ts"])
                if not hmac.compare_digest(good, cp["signature"]):
                    found.append((seq, "forged checkpoint", f"checkpoint at seq {seq} has a bad signature"))
                marks[seq] = cp["hash"]
        expected_seq, prev = 1, GENESIS_HASH
        # hash -> seq of recent records, to recognise a record moved to another position
        hashes: dict[str, int] = {}
        head = 0
        for row in self.rows():
            seq = int(row["seq"])
            head = seq
            if seq != expected_seq:  # a gap: the record expected here was deleted
                found.append((expected_seq, "deleted", f"records {expected_seq}..{seq - 1} are missing"))
                break
            problem = _diagnose(row, prev, hashes)
            if problem is not None:
                found.append((seq, *problem))
                break
            if seq in marks and marks[seq] != row["hash"]:
                found.append(
                    (seq, "modified", f"record {seq} differs from its signed checkpoint (chain rewritten)")
                )
                break
            hashes[row["hash"]] = seq
            if len(hashes) > _RECENT:
                del hashes[next(iter(hashes))]  # dicts keep insertion order: drop the oldest
            prev = row["hash"]
            expected_seq += 1
        else:
            if marks and max(marks) >= expected_seq:  # a signed head that no longer exists
                found.append(
                    (
                        expected_seq,
                        "truncated",
                        f"the log ends at seq {expected_seq - 1}, but a signed checkpoint names seq "
                        f"{max(marks)}",
                    )
                )
        signed = sorted(marks)
        if not found:
            return ChainCheck(head, None, None, "", len(signed), signed[-1] if signed else None)
        seq, problem, detail = min(found, key=lambda item: item[0])
        return ChainCheck(head, seq, problem, detail, len(signed), signed[-1] if signed else None)


@dataclass(frozen=True)
class ChainCheck:
    head: int  # the last sequence number read (up to the first bad record)
    first_bad: int | None
    problem: str | None  # modified | deleted | reordered | truncated | forged checkpoint
    detail: str
    checkpoints: int  # signed checkpoints checked (0 without a key)
    last_checkpoint: int | None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


_RECENT = 1024


def _diagnose(row: dict[str, Any], prev: str, seen: dict[str, int]) -> tuple[str, str] | None:
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


def _earliest(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with its JSON fields parsed back (for reports and APIs)."""
    out = dict(row)
    for name in _JSON_FIELDS:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    return out
