"""The HTTP transport against a real OpenLineage receiver on 127.0.0.1, including the receiver going away."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lineage import events
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings
from meshcore.store import dispose_all


class Receiver:
    """A minimal `POST /api/v1/lineage` endpoint that keeps what it was sent."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict] = []
        self.auth: list[str | None] = []
        received, auth = self.received, self.auth

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/api/v1/lineage":
                    self.send_response(404)
                else:
                    received.append(json.loads(body))
                    auth.append(self.headers.get("Authorization"))
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def _http_settings(settings: Settings, port: int) -> Settings:
    extra = {
        "lineage_transports": "http",
        "lineage_url": f"http://127.0.0.1:{port}",
        "lineage_api_key": "k1",
        "lineage_timeout": "1",
    }
    return replace(settings, extra=extra)


def _batch(runs: int) -> list:
    out = []
    for i in range(runs):
        out += events.ingest_events(
            events.new_run_id(), None, f"/l/{i}.csv", f"raw.t{i}", i, warehouse_path="/w.duckdb"
        )
    return out


def _key(event: dict) -> tuple[str, str]:
    return event["run"]["runId"], event["eventType"]


def test_http_transport_delivers_everything(settings: Settings, receiver: Receiver) -> None:
    recorder = LineageRecorder.from_settings(_http_settings(settings, receiver.port))
    sent = [events.to_dict(e) for e in _batch(30)]
    recorder.record(sent)
    assert recorder.flush(timeout=10)
    assert [_key(e) for e in receiver.received] == [_key(e) for e in sent]
    assert receiver.received[0] == sent[0]
    assert set(receiver.auth) == {"Bearer k1"}
    recorder.stop()
    dispose_all()


def test_receiver_down_appends_stay_fast_and_the_backlog_drains_with_zero_loss(
    settings: Settings, receiver: Receiver
) -> None:
    port = receiver.port
    recorder = LineageRecorder.from_settings(
        _http_settings(settings, port), base_delay=0.05, max_delay=0.2, poll_interval=0.05
    ).start()
    try:
        before = [events.to_dict(e) for e in _batch(5)]
        recorder.record(before)
        assert recorder.flush(timeout=10)
        receiver.stop()

        during = [events.to_dict(e) for e in _batch(50)]
        slowest = 0.0
        for event in during:  # one append per "request", as the gateway does
            started = time.monotonic()
            recorder.record(event)
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5, f"an append waited {slowest:.2f}s on the dead backend"
        assert recorder.flush(timeout=0.3) is False  # nothing can be delivered now...
        assert recorder.dispatcher.pending() == {"http": 100}  # ...and nothing was dropped

        restarted = Receiver(port)
        try:
            assert recorder.flush(timeout=10)
            expected = [_key(e) for e in before + during]
            got = [_key(e) for e in receiver.received + restarted.received]
            assert got == expected  # count, ids and order: zero loss, no duplicates
        finally:
            restarted.stop()
    finally:
        recorder.stop()
        dispose_all()
