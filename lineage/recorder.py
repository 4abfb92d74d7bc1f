"""The two-line API for producers: `LineageRecorder.from_settings(settings).record(events)`, then `flush()`.

`record` is on the caller's critical path and only appends to the outbox (durable when it returns).
Concurrent callers share one transaction (group commit): whoever arrives while a commit is running
waits for the next one, which carries everybody queued meanwhile. Delivery happens in the
dispatcher's background thread, or in `flush()` at the end of a CLI build.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Connection

from lineage.compaction import Compactor
from lineage.dispatcher import Dispatcher
from lineage.outbox import Outbox
from lineage.transports import Transport, transports_from_settings
from meshcore.settings import Settings
from meshcore.store import get_engine, retry_once

if TYPE_CHECKING:  # openlineage-python is loaded by whoever builds RunEvents, not by recording
    from openlineage.client.event_v2 import RunEvent

Event: TypeAlias = "RunEvent | dict[str, Any] | str"
log = logging.getLogger("civicmesh.lineage")

_shared: dict[tuple[Any, ...], LineageRecorder] = {}
_shared_lock = threading.Lock()


class _Pending:
    __slots__ = ("done", "error", "rows", "uids")

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.done = False
        self.uids: list[str] = []
        self.error: BaseException | None = None


class GroupCommit:
    """Leader/follower batching of outbox writes from many threads into one transaction."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._leader = False
        self.commits = 0  # how many transactions were used (group-commit effectiveness)

    def submit(self, rows: list[dict[str, Any]]) -> list[str]:
        item = _Pending(rows)
        with self._cond:
            self._queue.append(item)
            while not item.done:
                if self._leader:
                    self._cond.wait()
                    continue
                self._leader = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._commit(batch)
                finally:
                    self._cond.acquire()
                    self._leader = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        return item.uids

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            rows = [row for item in batch for row in item.rows]
            retry_once(lambda: self.outbox.write(rows))  # a broken store connection is replaced, once
            self.commits += 1
            for item in batch:
                item.uids = [row["event_uid"] for row in item.rows]
        except BaseException as exc:  # every waiter learns its events were not stored
            for item in batch:
                item.error = exc
        for item in batch:
            item.done = True


class LineageRecorder:
    def __init__(self, outbox: Outbox, transports: Iterable[Transport], **dispatcher_options: Any) -> None:
        self.outbox = outbox
        self.dispatcher = Dispatcher(outbox, list(transports), **dispatcher_options)
        self._group = GroupCommit(outbox)

    @classmethod
    def from_settings(cls, settings: Settings, **dispatcher_options: Any) -> LineageRecorder:
        outbox = Outbox(get_engine(settings.metadata_url)).ensure_schema()
        retention = settings.lineage_read_retention
        if retention is not None:
            dispatcher_options.setdefault("compactor", Compactor(outbox, retention))
            dispatcher_options.setdefault("compact_interval", settings.lineage_compact_interval_s)
        return cls(outbox, transports_from_settings(settings), **dispatcher_options)

    @classmethod
    def shared(cls, settings: Settings) -> LineageRecorder:
        """One recorder per metadata store and process, so calls from many steps share group commits
        and one dispatcher (and the schema check runs once)."""
        key = (settings.metadata_url, tuple(sorted(settings.extra.items())))
        with _shared_lock:
            recorder = _shared.get(key)
            if recorder is None:
                recorder = _shared[key] = cls.from_settings(settings)
            return recorder

    def record(self, events: Iterable[Event] | Event, connection: Connection | None = None) -> list[str]:
        """Durably store events (one transaction, shared with concurrent callers); returns their uids.

        With `connection`, they are written in the caller's open transaction instead.
        """
        if isinstance(events, dict | str) or not isinstance(events, Iterable):  # one event
            events = [events]
        rows = self.outbox.prepare(events)
        uids = self.outbox.write(rows, connection) if connection is not None else self._group.submit(rows)
        self.dispatcher.wake()
        return uids

    def flush(self, timeout: float = 1.0) -> bool:
        """Deliver everything pending, for at most `timeout` seconds; False if something is still
        pending then (it stays in the outbox for the next dispatcher: nothing is lost).

        The budget holds even when a send blocks (a backend that accepts connections and never
        answers): delivery runs in a helper thread that is left to finish or fail on its own."""
        outcome: list[bool] = []

        def deliver() -> None:
            try:
                outcome.append(self.dispatcher.drain(timeout))
            except Exception:  # the store went away meanwhile: the events wait in the outbox
                log.warning("lineage flush failed; events stay in the outbox", exc_info=True)

        worker = threading.Thread(target=deliver, name="lineage-flush", daemon=True)
        worker.start()
        worker.join(timeout)
        return bool(outcome and outcome[0])

    def start(self) -> LineageRecorder:
        self.dispatcher.start()
        return self

    def stop(self, flush_timeout: float = 0.0) -> None:
        if flush_timeout > 0:
            self.flush(flush_timeout)
        self.dispatcher.stop()

    def __enter__(self) -> LineageRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
