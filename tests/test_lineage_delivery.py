"""Lineage survives a backend outage: with the receiving OpenLineage API down, a real build still
succeeds in bounded time and keeps its events; once the receiver is back they all arrive.

The receiver is an OpenLineage HTTP backend (`POST /api/v1/lineage`, as Marquez serves it) in a
thread of this process. Not another civicmesh gateway: civicmesh's own jobs and products are what a
gateway refuses from any external producer (issue 11: lineage ingest is a privilege).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lineage.outbox import Outbox
from lineage.recorder import LineageRecorder
from meshcore.store import get_engine
from tests.mesh import BuiltMesh, build, isolated_settings

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Backend:
    """A minimal OpenLineage HTTP backend that keeps every event it was sent (201 each)."""

    def __init__(self, port: int) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = self.path == "/api/v1/lineage" and self.headers.get("Authorization") == "Bearer k1"
                if ok:
                    received.append(json.loads(body))
                self.send_response(201 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _keys(events: list[dict]) -> set[tuple[str, str, str]]:
    return {(data["run"]["runId"], data["eventType"], data["job"]["name"]) for data in events}


def test_build_succeeds_with_backend_down_and_backlog_drains_with_zero_loss(
    built_mesh: BuiltMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("CIVICMESH_LINEAGE_TRANSPORTS", "http")
    monkeypatch.setenv("CIVICMESH_LINEAGE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CIVICMESH_LINEAGE_API_KEY", "k1")

    home = tmp_path / "home"
    shutil.copytree(built_mesh.settings.home, home, ignore=shutil.ignore_patterns("dagster", "logs"))
    settings = isolated_settings(home)
    sender = Outbox(get_engine(settings.metadata_url))
    already = sender.count()

    started = time.monotonic()
    report, lines = build(settings)  # the receiver is not running
    assert report.success, report.failed_steps
    assert time.monotonic() - started < 120, "a dead backend must not stall the build"
    assert any("unreachable" in line for line in lines)
    new_events = list(sender.events(after_seq=0))[already:]
    assert new_events, "the build recorded lineage"
    assert sender.pending_count("http") >= len(new_events)

    backend = _Backend(port)
    try:
        recorder = LineageRecorder.from_settings(settings)
        assert recorder.flush(timeout=60), "the backlog drains once the receiver is back"
        recorder.stop()
        assert sender.pending_count("http") == 0
        sent = [json.loads(e.event_json) for e in new_events]
        assert _keys(sent) <= _keys(backend.received), "every event arrived (count and ids)"
    finally:
        backend.stop()
