"""Query deadlines: one thread per process interrupts the DuckDB queries that outlive theirs.

Guarantee: a query registered with `watch(cursor, seconds)` is interrupted once `seconds` have
passed, and again every `REPEAT_S` until `done(token)` — so an interrupt that lands before DuckDB
has started the query (a loaded machine) is not lost. After `done` returns, its cursor is never
interrupted (interrupts and `done` take the same lock), so the caller may close it.

One watcher thread rather than a timer thread per query: in a DuckDB microbenchmark, a thread
started per query added ~1.4 ms to a 4 ms selective read (end to end through the gateway the
difference is within run-to-run spread; issue 16's note has both figures).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Protocol

REPEAT_S = 0.005  # between interrupts of an overdue query that has not stopped yet
IDLE_S = 0.05  # the watcher's longest sleep; a deadline sooner than its wake-up wakes it at once


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class Deadlines:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: dict[int, tuple[float, Interruptible]] = {}
        self._ids = itertools.count()
        self._wake_at = 0.0
        self._thread: threading.Thread | None = None

    def watch(self, cursor: Interruptible, seconds: float) -> int:
        """Register `cursor`'s query, due in `seconds`; returns the token for `done`."""
        deadline = time.monotonic() + seconds
        with self._cond:
            token = next(self._ids)
            self._running[token] = (deadline, cursor)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="query-deadlines", daemon=True)
                self._thread.start()
            if deadline < self._wake_at:
                self._cond.notify()
        return token

    def done(self, token: int) -> None:
        with self._cond:
            self._running.pop(token, None)

    def _watch(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                overdue = [cursor for deadline, cursor in self._running.values() if deadline <= now]
                for cursor in overdue:
                    cursor.interrupt()
                upcoming = [deadline - now for deadline, _ in self._running.values() if deadline > now]
                sleep = REPEAT_S if overdue else min([IDLE_S, *upcoming])
                self._wake_at = now + sleep
                self._cond.wait(sleep)
