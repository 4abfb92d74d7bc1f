"""The durable lineage outbox: every event is committed to the metadata store before anyone delivers it.

Rows are immutable and numbered (`seq`); delivery is tracked per transport, so adding a transport
later replays history to it, and a transport that is down only delays its own deliveries. Delivery
is at-least-once: a crash between sending and `mark_delivered` sends that batch again.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from lineage.lease import LEASE_TTL_S, holder_alive
from lineage.read_events import uuid7
from meshcore.accesslog import insert_rows
from meshcore.store import as_utc, create_index, create_tables

if TYPE_CHECKING:
    from openlineage.client.event_v2 import RunEvent

log = logging.getLogger("civicmesh.lineage")

metadata = MetaData()

outbox_table = Table(
    "lineage_outbox",
    metadata,
    # Integer (not BigInteger) so SQLite makes it the rowid alias and autoincrements it.
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    Column("event_uid", String(36), nullable=False, unique=True),
    Column("run_id", String(36), nullable=False, index=True),
    Column("job_namespace", String(200), nullable=False),
    Column("job_name", String(500), nullable=False),
    Column("event_type", String(20), nullable=False),
    Column("event_time", String(40), nullable=False),
    Column("event_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

delivery_table = Table(
    "lineage_delivery",
    metadata,
    Column("transport", String(50), primary_key=True),
    Column("seq", Integer().with_variant(BigInteger, "postgresql"), primary_key=True),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(20), nullable=False),  # delivered | rejected (the backend refused it for good)
    Column("error", Text, nullable=True),
)

# Everything at or below `floor_seq` is delivered for that transport: the pending query starts there,
# and delivery rows below it are pruned, so neither table scan grows with history.
cursor_table = Table(
    "lineage_cursor",
    metadata,
    Column("transport", String(50), primary_key=True),
    Column("floor_seq", Integer().with_variant(BigInteger, "postgresql"), nullable=False),
    # One deliverer per transport across processes (the gateway's background dispatcher and a CLI
    # build's flush share the outbox): without it both would send the same events twice.
    Column("lease_owner", String(100), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
)

Index("ix_lineage_outbox_job", outbox_table.c.job_namespace, outbox_table.c.job_name)
# Compaction's retention cutoff and, on PostgreSQL, the delivery floor's visibility lag look rows up
# by age (`recorded_before`): without it each scanned the outbox.
CREATED_INDEX = Index("ix_lineage_outbox_created_at", outbox_table.c.created_at)


def newest_before(cutoff: datetime) -> Select[Any]:
    """The seq of the newest event recorded before `cutoff` (timezone-aware, else ValueError): one
    seek on `ix_lineage_outbox_created_at` (see `recorded_before`)."""
    if cutoff.tzinfo is None:
        raise ValueError(f"cutoff {cutoff} has no time zone: which instant is meant cannot be told")
    return (
        select(outbox_table.c.seq)
        # SQLite compares the stored UTC text: a cutoff in another zone must be that instant in UTC.
        .where(outbox_table.c.created_at < cutoff.astimezone(UTC))
        .order_by(outbox_table.c.created_at.desc(), outbox_table.c.seq.desc())
        .limit(1)
    )


def recorded_before(conn: Connection, cutoff: datetime) -> int:
    """The seq of the newest event recorded before `cutoff` (0: none). Never above the largest seq
    recorded before it (what `max(seq) WHERE created_at < cutoff` says), so a bound taken from it is
    as safe; that form walked every event newer than the cutoff, a whole retention window of reads
    (issue 16)."""
    return int(conn.execute(newest_before(cutoff)).scalar() or 0)


_SERVER_DATED = {"created_at": func.clock_timestamp()}  # one expression: its plan key is rendered once


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert prepared outbox rows. On PostgreSQL each is dated by the server's clock as it is
    inserted, not by its writer's (`prepare`): the visibility lag compares those dates with the
    server's clock (`_settled_before`), so a host whose clock runs behind cannot date an event past
    the lag and let the delivery floor pass a seq still in an open transaction (that event was then
    never delivered). SQLite is one host's file: its rows keep the writer's time."""
    if conn.dialect.name != "postgresql":
        insert_rows(conn, outbox_table, rows)
        return
    undated = [{k: v for k, v in row.items() if k != "created_at"} for row in rows]
    insert_rows(conn, outbox_table, undated, _SERVER_DATED)


# Who may still hold an uncommitted seq: every transaction that wrote to the outbox holds its
# RowExclusiveLock until it ends, taken before its insert draws a seq (pg_locks lists them, prepared
# transactions with no pid). A writer whose start cannot be read (another role's session without
# pg_read_all_stats, a prepared transaction) is unknown.
_WRITERS_SQL = """
SELECT clock_timestamp(),
       min(a.xact_start),
       bool_or(a.xact_start IS NULL)
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock'
  AND l.relation = CAST(:outbox AS regclass)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.pid IS DISTINCT FROM pg_backend_pid()
"""


def _settled_before(conn: Connection, now: datetime, lag: timedelta) -> datetime | None:
    """An instant before which every outbox seq is committed or gone (None: cannot be told).

    SQLite: `now - lag` (the writer's clock dates rows). PostgreSQL: the server's clock minus the
    lag (rows are dated by it, `_insert`), and no later than the start of the oldest transaction
    still writing to the outbox: a row is dated when inserted, not when it commits, so a
    transaction open longer than the lag (a commit waiting on synchronous replication, a caller's
    transaction with `connection=`) still holds a seq below rows older than the lag."""
    if conn.dialect.name != "postgresql":
        return now - lag
    row = conn.execute(text(_WRITERS_SQL), {"outbox": outbox_table.name}).one()
    clock: datetime = row[0]
    oldest: datetime | None = row[1]
    if row[2]:
        return None
    cutoff = as_utc(clock) - lag
    return cutoff if oldest is None else min(cutoff, as_utc(oldest))


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    event_uid: str
    run_id: str
    event_type: str
    event_json: str

    def as_dict(self) -> dict[str, Any]:
        return json.loads(self.event_json)


def _dumps(data: dict[str, Any]) -> str:
    """Compact, sorted-keys, ASCII JSON (as `json.dumps(..., sort_keys=True)` always stored it).

    orjson is several times faster than json on an event (reads write one per request); what it
    refuses (ints beyond 64 bits, non-string keys) and non-ASCII text (orjson writes raw UTF-8, the
    stored events were always \\u-escaped) take json."""
    try:
        text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError
        text = ""
    if text and text.isascii():
        return text
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _row_for(event: RunEvent | dict[str, Any] | str, now: datetime) -> dict[str, Any]:
    if isinstance(event, dict):
        data = event
    elif isinstance(event, str):
        data = json.loads(event)
    else:  # a RunEvent: openlineage-python is loaded by whoever built it
        from lineage.runs import to_dict

        data = to_dict(event)
    # Validate the envelope now: a malformed event must fail the caller, not the dispatcher later.
    try:
        run_id = str(uuid.UUID(data["run"]["runId"]))
        job = data["job"]
        event_time = data["eventTime"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an OpenLineage RunEvent: {exc!r}") from exc
    return {
        "event_uid": uuid7(),
        "run_id": run_id,
        "job_namespace": job["namespace"],
        "job_name": job["name"],
        "event_type": data.get("eventType") or "OTHER",
        "event_time": event_time,
        "event_json": _dumps(data),
        "created_at": now,
    }


class Outbox:
    def __init__(self, engine: Engine, visibility_lag_s: float | None = None) -> None:
        self.engine = engine
        # On PostgreSQL a lower seq can commit after a higher one; only advance the floor past rows
        # old enough that no open transaction can still hold a lower seq. SQLite commits serially.
        if visibility_lag_s is None:
            visibility_lag_s = 0.0 if engine.dialect.name == "sqlite" else 300.0
        self.visibility_lag = timedelta(seconds=visibility_lag_s)

    def ensure_schema(self) -> Outbox:
        create_tables(self.engine, metadata)
        create_index(self.engine, CREATED_INDEX)  # an outbox made before the index gets it once
        return self

    # -- writing ---------------------------------------------------------------------------------

    def append(
        self, events: Iterable[RunEvent | dict[str, Any] | str], connection: Connection | None = None
    ) -> list[str]:
        """Store `events` in one transaction; returns their event uids in order.

        With `connection`, the rows join the caller's transaction (committed or rolled back with it),
        so an access-log record and its lineage event are durable together.
        """
        return self.write(self.prepare(events), connection)

    def prepare(self, events: Iterable[RunEvent | dict[str, Any] | str]) -> list[dict[str, Any]]:
        """Serialise and check events (outside any lock or transaction: it is the slow part)."""
        now = datetime.now(UTC)
        return [_row_for(e, now) for e in events]

    def write(self, rows: list[dict[str, Any]], connection: Connection | None = None) -> list[str]:
        if not rows:
            return []
        if connection is not None:
            _insert(connection, rows)
        else:
            with self.engine.begin() as conn:
                _insert(conn, rows)
        return [r["event_uid"] for r in rows]

    # -- delivering ------------------------------------------------------------------------------

    def _floor(self, conn: Connection, transport: str) -> int:
        value = conn.execute(
            select(cursor_table.c.floor_seq).where(cursor_table.c.transport == transport)
        ).scalar()
        return int(value or 0)

    def _undelivered(self, transport: str, floor: int) -> Any:
        delivered = exists().where(
            and_(delivery_table.c.transport == transport, delivery_table.c.seq == outbox_table.c.seq)
        )
        return and_(outbox_table.c.seq > floor, ~delivered)

    def acquire(self, transport: str, owner: str, ttl_s: float = LEASE_TTL_S) -> bool:
        """Take (or renew) the delivery lease of `transport` for `owner`; False if another holds it.

        A lease not renewed within `ttl_s` can be taken over, and so at once can the lease of a dead
        process on this machine (`lineage.lease`: fencing by process identity).
        """
        if self._take(transport, owner, ttl_s):
            return True
        holder = self.lease(transport)[0]
        if holder is None or holder_alive(holder) is not False:
            return False
        taken = self._take(transport, owner, ttl_s, dead_holder=holder)  # only if it is still theirs
        if taken:
            log.warning("lineage %s: took over the delivery lease of %s (process gone)", transport, holder)
        return taken

    def lease(self, transport: str) -> tuple[str | None, datetime | None]:
        """(holder, held until) of `transport`'s delivery lease; (None, None) when nobody holds it."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(cursor_table.c.lease_owner, cursor_table.c.lease_until).where(
                    cursor_table.c.transport == transport
                )
            ).first()
        return (row.lease_owner, as_utc(row.lease_until)) if row is not None else (None, None)

    def _take(self, transport: str, owner: str, ttl_s: float, dead_holder: str | None = None) -> bool:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=ttl_s)
        table = cursor_table
        free = [table.c.lease_owner.is_(None), table.c.lease_owner == owner, table.c.lease_until < now]
        if dead_holder is not None:
            free.append(table.c.lease_owner == dead_holder)
        try:
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(table)
                    .where(table.c.transport == transport, or_(*free))
                    .values(lease_owner=owner, lease_until=until)
                ).rowcount
                if taken:
                    return True
                if conn.execute(select(table.c.transport).where(table.c.transport == transport)).first():
                    return False
                conn.execute(
                    table.insert().values(
                        transport=transport, floor_seq=0, lease_owner=owner, lease_until=until
                    )
                )
                return True
        except IntegrityError:  # another process created the row first: it holds the lease
            return False

    def release(self, transport: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(cursor_table)
                .where(cursor_table.c.transport == transport, cursor_table.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def pending(self, transport: str, limit: int = 500) -> list[OutboxEvent]:
        """The oldest undelivered events for `transport`, in append order."""
        with self.engine.connect() as conn:
            floor = self._floor(conn, transport)
            rows = conn.execute(
                select(
                    outbox_table.c.seq,
                    outbox_table.c.event_uid,
                    outbox_table.c.run_id,
                    outbox_table.c.event_type,
                    outbox_table.c.event_json,
                )
                .where(self._undelivered(transport, floor))
                .order_by(outbox_table.c.seq)
                .limit(limit)
            ).all()
        return [OutboxEvent(r.seq, r.event_uid, r.run_id, r.event_type, r.event_json) for r in rows]

    def oldest_pending(self, transport: str) -> datetime | None:
        """When the oldest event still undelivered to `transport` was recorded (None: none pending)."""
        with self.engine.connect() as conn:
            floor = self._floor(conn, transport)
            first = (
                select(func.min(outbox_table.c.seq))
                .where(self._undelivered(transport, floor))
                .scalar_subquery()
            )
            value = conn.execute(
                select(outbox_table.c.created_at).where(outbox_table.c.seq == first)
            ).scalar()
        return as_utc(value)

    def transports(self) -> list[str]:
        """Every transport that ever delivered or held a lease here."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(cursor_table.c.transport).order_by(cursor_table.c.transport)).scalars()
            )

    def pending_count(self, transport: str) -> int:
        with self.engine.connect() as conn:
            floor = self._floor(conn, transport)
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox_table).where(self._undelivered(transport, floor))
                ).scalar()
                or 0
            )

    def mark_delivered(
        self, transport: str, seqs: Sequence[int], outcome: str = "delivered", error: str | None = None
    ) -> None:
        if not seqs:
            return
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            floor = self._floor(conn, transport)
            todo = sorted({s for s in seqs if s > floor})
            if todo:
                already: set[int] = set(
                    conn.execute(
                        select(delivery_table.c.seq).where(
                            delivery_table.c.transport == transport, delivery_table.c.seq.in_(todo)
                        )
                    ).scalars()
                )
                rows = [
                    {
                        "transport": transport,
                        "seq": s,
                        "delivered_at": now,
                        "outcome": outcome,
                        "error": error,
                    }
                    for s in todo
                    if s not in already
                ]
                if rows:
                    conn.execute(delivery_table.insert(), rows)
            self._advance_floor(conn, transport, floor, now)

    def _advance_floor(self, conn: Connection, transport: str, floor: int, now: datetime) -> None:
        first_pending = conn.execute(
            select(func.min(outbox_table.c.seq)).where(self._undelivered(transport, floor))
        ).scalar()
        if first_pending is None:
            candidate = conn.execute(select(func.max(outbox_table.c.seq))).scalar() or floor
        else:
            candidate = int(first_pending) - 1
        if self.visibility_lag:
            settled = _settled_before(conn, now, self.visibility_lag)
            candidate = floor if settled is None else min(candidate, recorded_before(conn, settled))
        if candidate <= floor:
            return
        if conn.execute(
            select(cursor_table.c.transport).where(cursor_table.c.transport == transport)
        ).first():
            conn.execute(
                update(cursor_table).where(cursor_table.c.transport == transport).values(floor_seq=candidate)
            )
        else:
            conn.execute(cursor_table.insert().values(transport=transport, floor_seq=candidate))
        conn.execute(
            delete(delivery_table).where(
                delivery_table.c.transport == transport, delivery_table.c.seq <= candidate
            )
        )

    # -- reading ---------------------------------------------------------------------------------

    def events(
        self, after_seq: int = 0, batch: int = 5000, skip_job_prefix: str | None = None
    ) -> Iterator[OutboxEvent]:
        """Every stored event in append order (the lineage graph is built from these).

        `skip_job_prefix` leaves out jobs by name prefix, e.g. the per-request consumer events when
        only upstream lineage is asked for (they are most of the rows)."""
        last = after_seq
        while True:
            query = select(
                outbox_table.c.seq,
                outbox_table.c.event_uid,
                outbox_table.c.run_id,
                outbox_table.c.event_type,
                outbox_table.c.event_json,
            ).where(outbox_table.c.seq > last)
            if skip_job_prefix:
                query = query.where(~outbox_table.c.job_name.startswith(skip_job_prefix, autoescape=True))
            with self.engine.connect() as conn:
                rows = conn.execute(query.order_by(outbox_table.c.seq).limit(batch)).all()
            if not rows:
                return
            for r in rows:
                yield OutboxEvent(r.seq, r.event_uid, r.run_id, r.event_type, r.event_json)
            last = rows[-1].seq

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox_table)).scalar() or 0)
