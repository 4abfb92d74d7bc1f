"""Lineage survives a backend outage: with the receiving OpenLineage API down, a real build still
succeeds in bounded time and keeps its events; once the receiver is back they all arrive.

The receiver is another civicmesh gateway (`POST /api/v1/lineage`, authenticated), served by uvicorn.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from civicmesh.store import get_engine
from gateway.auth import issue_token
from lineage.outbox import Outbox
from lineage.recorder import LineageRecorder
from tests.mesh import BuiltMesh, build, isolated_settings

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(home: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CIVICMESH_HOME": str(home),
        "CIVICMESH_METADATA_URL": f"sqlite:///{home / 'metadata.db'}",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "civicmesh"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("receiver did not start")


def _keys(events) -> set[tuple[str, str, str]]:
    out = set()
    for event in events:
        data = json.loads(event.event_json)
        out.add((data["run"]["runId"], data["eventType"], data["job"]["name"]))
    return out


def test_build_succeeds_with_backend_down_and_backlog_drains_with_zero_loss(
    built_mesh: BuiltMesh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver_home = tmp_path / "receiver"
    receiver = isolated_settings(receiver_home)
    receiver.ensure_dirs()
    port = _free_port()
    monkeypatch.setenv("CIVICMESH_LINEAGE_TRANSPORTS", "http")
    monkeypatch.setenv("CIVICMESH_LINEAGE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CIVICMESH_LINEAGE_API_KEY", issue_token(receiver, "carol", ttl_hours=1))

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

    process = _serve(receiver_home, port)
    try:
        recorder = LineageRecorder.from_settings(settings)
        assert recorder.flush(timeout=60), "the backlog drains once the receiver is back"
        recorder.stop()
        assert sender.pending_count("http") == 0
        received = Outbox(get_engine(receiver.metadata_url)).events()
        assert _keys(new_events) <= _keys(received), "every event arrived (count and ids)"
    finally:
        process.terminate()
        process.wait(timeout=20)
