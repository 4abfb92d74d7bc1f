"""`Deadlines`: overdue queries are interrupted (again until done), finished ones never, and a short
deadline is kept while a long one is being watched. Recorders stand in for DuckDB cursors here; the
real cursors are interrupted in tests/gateway/test_gateway_failures.py."""

from __future__ import annotations

import threading
import time

from gateway import deadlines as deadlines_module
from gateway.deadlines import Deadlines


class Recorder:
    def __init__(self) -> None:
        self.at: list[float] = []
        self.lock = threading.Lock()

    def interrupt(self) -> None:
        with self.lock:
            self.at.append(time.monotonic())


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_an_overdue_query_is_interrupted_again_until_done_and_never_after() -> None:
    deadlines, cursor = Deadlines(), Recorder()
    started = time.monotonic()
    token = deadlines.watch(cursor, 0.05)
    wait_for(lambda: len(cursor.at) >= 3)  # the first interrupt may have come before the query ran
    assert cursor.at[0] - started >= 0.05
    deadlines.done(token)
    count = len(cursor.at)
    time.sleep(0.1)
    assert len(cursor.at) == count


def test_a_query_done_in_time_is_never_interrupted() -> None:
    deadlines, cursor = Deadlines(), Recorder()
    deadlines.done(deadlines.watch(cursor, 0.05))
    time.sleep(0.15)
    assert cursor.at == []


def test_a_short_deadline_is_kept_while_a_long_one_is_watched(monkeypatch) -> None:
    monkeypatch.setattr(deadlines_module, "IDLE_S", 5.0)  # the watcher would sleep 5 s unless woken
    deadlines, slow, quick = Deadlines(), Recorder(), Recorder()
    deadlines.watch(slow, 30.0)
    time.sleep(0.1)  # the watcher now sleeps towards its longest wait
    started = time.monotonic()
    token = deadlines.watch(quick, 0.0)
    wait_for(lambda: bool(quick.at))
    assert quick.at[0] - started < 2.5  # woken at once, not after its 5 s sleep
    deadlines.done(token)
    assert slow.at == []
