"""Delivery: retries with back-off, no loss while a transport fails, order per run kept."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from lineage import events
from lineage.dispatcher import Dispatcher
from lineage.outbox import Outbox, OutboxEvent
from lineage.transports import (
    ConsoleTransport,
    DeliveryError,
    FileTransport,
    HttpTransport,
    transports_from_settings,
)
from meshcore.settings import Settings


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until true or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class FlakyTransport:
    """Delivers into a list; `down` makes it fail after `fail_after` events of a batch."""

    def __init__(self, name: str = "flaky") -> None:
        self.name = name
        self.down = False
        self.fail_after = 0
        self.reject_seq: int | None = None
        self.received: list[OutboxEvent] = []
        self.attempts = 0

    def send(self, batch: Sequence[OutboxEvent]) -> None:
        self.attempts += 1
        for index, event in enumerate(batch):
            if event.seq == self.reject_seq:
                raise DeliveryError("HTTP 400 bad event", delivered=index, rejected=True)
            if self.down and index >= self.fail_after:
                raise DeliveryError("connection refused", delivered=index)
            self.received.append(event)

    def close(self) -> None:
        pass


def _events(runs: int) -> list:
    out = []
    for i in range(runs):
        out += events.ingest_events(
            events.new_run_id(), None, f"/l/{i}.csv", f"raw.t{i}", i, warehouse_path="/w.duckdb"
        )
    return out


def test_failing_transport_keeps_events_and_delivers_them_after_recovery(outbox: Outbox) -> None:
    uids = outbox.append(_events(10))
    transport = FlakyTransport()
    transport.down, transport.fail_after = True, 3
    dispatcher = Dispatcher(outbox, [transport], batch_size=7, base_delay=0.01)
    assert dispatcher.run_once() == 3  # partial progress is kept
    assert outbox.pending_count("flaky") == 17
    assert dispatcher.state["flaky"].failures == 1
    transport.fail_after = 0
    for _ in range(3):
        assert dispatcher.run_once(force=True) == 0
    assert outbox.pending_count("flaky") == 17 and dispatcher.state["flaky"].failures == 4
    transport.down = False
    assert dispatcher.drain(timeout=5)
    assert [e.event_uid for e in transport.received] == uids  # count, ids and order
    assert dispatcher.state["flaky"].failures == 0


def test_back_off_grows_and_skips_the_transport_meanwhile(outbox: Outbox) -> None:
    now = [100.0]
    outbox.append(_events(1))
    transport = FlakyTransport()
    transport.down = True
    dispatcher = Dispatcher(outbox, [transport], base_delay=1.0, max_delay=8.0, clock=lambda: now[0])
    delays = []
    for _ in range(6):
        dispatcher.run_once()
        delays.append(dispatcher.state["flaky"].next_attempt - now[0])
        attempts = transport.attempts
        dispatcher.run_once()  # still backing off: not attempted
        assert transport.attempts == attempts
        now[0] = dispatcher.state["flaky"].next_attempt
    # jittered between half and all of 1, 2, 4, 8, 8, 8 seconds
    for delay, full in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert full / 2 <= delay <= full


def test_order_per_run_is_kept_across_failures(outbox: Outbox) -> None:
    outbox.append(_events(20))
    transport = FlakyTransport()
    dispatcher = Dispatcher(outbox, [transport], batch_size=6, base_delay=0.001)
    for fail_after in (1, 4, 2, 5):  # fail in the middle of batches, at different places
        transport.down, transport.fail_after = True, fail_after
        dispatcher.run_once(force=True)
    transport.down = False
    assert dispatcher.drain(timeout=5)
    seen: dict[str, list[str]] = {}
    for event in transport.received:
        seen.setdefault(event.run_id, []).append(json.loads(event.event_json)["eventType"])
    assert len(seen) == 20 and all(types == ["START", "COMPLETE"] for types in seen.values())
    assert len(transport.received) == 40


def test_a_rejected_event_does_not_block_the_rest(outbox: Outbox) -> None:
    outbox.append(_events(3))
    transport = FlakyTransport()
    transport.reject_seq = outbox.pending("flaky")[1].seq
    dispatcher = Dispatcher(outbox, [transport])
    assert dispatcher.drain(timeout=5)
    assert len(transport.received) == 5 and dispatcher.state["flaky"].rejected == 1


def test_one_failing_transport_does_not_hold_up_another(outbox: Outbox) -> None:
    outbox.append(_events(2))
    good, bad = FlakyTransport("good"), FlakyTransport("bad")
    bad.down = True
    dispatcher = Dispatcher(outbox, [bad, good])
    assert dispatcher.run_once() == 4
    assert dispatcher.pending() == {"bad": 4, "good": 0}


def test_a_broken_transport_never_raises_into_the_caller(outbox: Outbox) -> None:
    class Broken(FlakyTransport):
        def send(self, batch: Sequence[OutboxEvent]) -> None:
            raise ZeroDivisionError("bug")

    outbox.append(_events(1))
    dispatcher = Dispatcher(outbox, [Broken("broken")])
    assert dispatcher.run_once() == 0
    assert "ZeroDivisionError" in (dispatcher.state["broken"].last_error or "")
    assert dispatcher.drain(timeout=0.2) is False


def test_background_thread_delivers_soon_after_append(outbox: Outbox) -> None:
    transport = FlakyTransport()
    dispatcher = Dispatcher(outbox, [transport], poll_interval=5.0).start()
    try:
        outbox.append(_events(2))
        dispatcher.wake()
        started = time.monotonic()
        assert wait_until(lambda: len(transport.received) == 4, timeout=5)
        assert time.monotonic() - started < 2  # woken, not waiting for the 5 s poll
    finally:
        dispatcher.stop()


def test_transports_are_configured_from_settings(settings: Settings) -> None:
    (default,) = transports_from_settings(settings)
    assert isinstance(default, FileTransport) and default.path == settings.lineage_dir / "events.jsonl"
    many = transports_from_settings(
        replace(
            settings, extra={"lineage_transports": "file, http,console", "lineage_url": "http://127.0.0.1:9"}
        )
    )
    assert [type(t) for t in many] == [FileTransport, HttpTransport, ConsoleTransport]
    assert many[1].url == "http://127.0.0.1:9/api/v1/lineage"
    with pytest.raises(ValueError, match="CIVICMESH_LINEAGE_URL"):
        transports_from_settings(replace(settings, extra={"lineage_transports": "http"}))
    with pytest.raises(ValueError, match="unknown lineage transport 'kafka'"):
        transports_from_settings(replace(settings, extra={"lineage_transports": "kafka"}))


def test_console_transport_prints_one_json_event_per_line(outbox: Outbox) -> None:
    stream = io.StringIO()
    outbox.append(_events(1))
    assert Dispatcher(outbox, [ConsoleTransport(stream)]).drain(timeout=2)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["eventType"] for line in lines] == ["START", "COMPLETE"]


def test_only_one_dispatcher_delivers_to_a_transport_at_a_time(outbox: Outbox) -> None:
    outbox.append(_events(3))
    first, second = FlakyTransport(), FlakyTransport()
    gateway, build = Dispatcher(outbox, [first]), Dispatcher(outbox, [second])
    assert gateway.run_once() == 6  # takes the lease
    outbox.append(_events(1))
    assert build.run_once() == 0  # another process holds it: no double delivery
    gateway.stop()  # releases the lease
    assert build.drain(timeout=2)
    assert len(first.received) == 6 and len(second.received) == 2


def test_a_dead_holders_lease_expires(outbox: Outbox) -> None:
    outbox.append(_events(1))
    # Long enough that a loaded CI machine reaches the first run_once inside the lease.
    assert outbox.acquire("flaky", "crashed-process", ttl_s=1.5)
    transport = FlakyTransport()
    dispatcher = Dispatcher(outbox, [transport])
    assert dispatcher.run_once() == 0
    held_until = outbox.lease("flaky")[1]
    assert held_until is not None
    time.sleep(max(0.0, (held_until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert dispatcher.run_once() == 2
