"""Compaction of delivered read events: the outbox keeps what the lineage graph needs, not every read.

Every governed read or export appends one consumer event (`consumer.<subject>.read|export`) to the
outbox: most of its rows, ~4 KB each. Once an event is delivered to every configured transport and
older than the retention (`Settings.lineage_read_retention_days`), it has done its job: the lineage
backend holds it, and the access log (hash-chained, never compacted here) holds who read what, when,
with which masks and row filter — what `civicmesh audit readers` answers from.

The lineage graph (`lineage.graph`) accumulates consumer jobs: a job reads the union of its
COMPLETE events' inputs, and shows its latest run. So per (consumer job, inputs) the newest COMPLETE
event is kept and every older one is deleted, as are FAIL events (denied reads, never edges): a graph
built after compaction equals the one built before (tests/lineage/test_lineage_compaction.py).

Fail closed, nothing lost: only events at or below every configured transport's delivery floor are
candidates (no transport, or one that never delivered: nothing is compacted), events of other jobs
(ingest, dbt, publish) and of external producers are never touched. What compaction removes is also
gone for a transport added later (it replays what is left). `lineage.queries.consumers` counts reads
within the retention only; the access log counts them all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select

from lineage import naming
from lineage.graph import CONSUMER_PREFIX
from lineage.outbox import Outbox, cursor_table, outbox_table, recorded_before
from lineage.receiver import is_external
from meshcore.store import as_utc

log = logging.getLogger("civicmesh.lineage")

PAGE = 2000  # rows read per query, and deleted per transaction (keeps the store's write lock short)
_Key = tuple[str, tuple[tuple[str, str], ...]]  # (consumer job, its inputs)


@dataclass
class Compactor:
    """Compacts one outbox; remembers, per process, how far it got and which events it kept, so a
    pass reads only the events delivered since the previous one."""

    outbox: Outbox
    retention: timedelta
    done_through: int = 0  # every consumer event at or below this seq has been judged
    kept: dict[_Key, int] = field(default_factory=dict)  # the newest event per key, judged so far

    def bound(self, transports: Sequence[str], now: datetime | None = None) -> int:
        """The highest seq that may be compacted: delivered to every one of `transports` and older
        than the retention. 0 when a transport has no delivery floor yet (or none is configured)."""
        if not transports:
            return 0
        cutoff = (now or datetime.now(UTC)) - self.retention
        with self.outbox.engine.connect() as conn:
            floors: dict[str, int] = dict(
                conn.execute(
                    select(cursor_table.c.transport, cursor_table.c.floor_seq).where(
                        cursor_table.c.transport.in_(list(transports))
                    )
                ).all()
            )
            if set(floors) != set(transports):
                return 0
            aged = recorded_before(conn, cutoff)
        return min(aged, *(int(f) for f in floors.values()))

    def run(self, transports: Sequence[str], now: datetime | None = None) -> int:
        """One pass: delete the consumer events made redundant since the last one. Returns how many.
        Reads and deletes a page at a time, newest first, so memory stays bounded by a page.

        An event at or below the bound that is still younger than the retention (stored after an
        event whose time is older: a write that waited for the lock, another host's clock) is left
        alone, and the next pass judges again from just below it."""
        now = now or datetime.now(UTC)
        bound = self.bound(transports, now)
        if bound <= self.done_through:
            return 0
        cutoff, removed, judged_through = now - self.retention, 0, bound
        judged: set[_Key] = set()
        for page in self._pages(self.done_through, bound):
            doomed: list[int] = []
            for seq, event_type, inputs, job, recorded in page:
                if recorded >= cutoff:
                    judged_through = seq - 1  # pages run newest first: ends at the lowest such seq
                    continue
                key = (job, inputs)
                if event_type != "COMPLETE" or key in judged:
                    doomed.append(seq)  # a denied read, or an older read of the same inputs
                    continue
                judged.add(key)
                older = self.kept.get(key)
                if older is not None and older < seq:
                    doomed.append(older)
                self.kept[key] = seq
            removed += self._delete(doomed)
        self.done_through = judged_through
        if removed:
            log.info("lineage: compacted %d delivered read events (through seq %d)", removed, bound)
        return removed

    def _pages(
        self, after: int, upto: int
    ) -> Iterator[list[tuple[int, str, tuple[tuple[str, str], ...], str, datetime]]]:
        """Pages of (seq, event type, inputs, job, when recorded) of civicmesh's consumer events in
        (after, upto], newest first."""
        t = outbox_table
        below = upto + 1
        while True:
            query = (
                select(t.c.seq, t.c.event_type, t.c.job_name, t.c.event_json, t.c.created_at)
                .where(
                    t.c.seq > after,
                    t.c.seq < below,
                    t.c.job_namespace == naming.JOB_NAMESPACE,
                    t.c.job_name.startswith(CONSUMER_PREFIX, autoescape=True),
                )
                .order_by(t.c.seq.desc())
                .limit(PAGE)
            )
            with self.outbox.engine.connect() as conn:
                rows: list[Any] = list(conn.execute(query).all())
            page = []
            for seq, event_type, job, text, recorded in rows:
                event = orjson.loads(text)
                if not is_external(event):  # the receiver refuses these; never judge one anyway
                    page.append((int(seq), str(event_type), _inputs(event), str(job), as_utc(recorded)))
            yield page
            if len(rows) < PAGE:
                return
            below = int(rows[-1].seq)

    def _delete(self, seqs: list[int]) -> int:
        removed = 0
        for start in range(0, len(seqs), PAGE):
            chunk = seqs[start : start + PAGE]
            with self.outbox.engine.begin() as conn:
                removed += conn.execute(delete(outbox_table).where(outbox_table.c.seq.in_(chunk))).rowcount
        return removed


def _inputs(event: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(d["namespace"]), str(d["name"])) for d in event.get("inputs") or ()))
