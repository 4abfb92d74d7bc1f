"""A gateway killed (-9) while it holds the lineage delivery lease does not stall delivery: another
process on the machine sees the holder is gone and delivers the backlog at once, well inside the
lease's own bound (`LEASE_TTL_S`), and nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from lineage.lease import LEASE_TTL_S, Holder
from lineage.outbox import Outbox
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings
from meshcore.store import get_engine
from tests.child_gateway import Gateway

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A working OpenLineage backend: (url, the events it received)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_a_killed_lease_holder_does_not_stall_delivery(
    tmp_path: Path,
    gateway_home: Callable[..., Settings],
    blackhole: str,
    receiver: tuple[str, list[dict]],
) -> None:
    home = tmp_path / "home"
    settings = gateway_home(home, f"sqlite:///{home / 'metadata.db'}")
    outbox = Outbox(get_engine(settings.metadata_url)).ensure_schema()
    lineage_env = {"CIVICMESH_LINEAGE_TRANSPORTS": "http", "CIVICMESH_LINEAGE_URL": blackhole}
    gateway = Gateway(settings, tmp_path / "gateway.log", {**lineage_env, "CIVICMESH_LINEAGE_TIMEOUT": "300"})
    try:
        token = issue_token(settings, "alice", 1)
        for n in range(3):  # three reads: three consumer events in the outbox
            query = f"{{ publicWorks {{ q{n}: serviceRequests(first: 2) {{ nodes {{ requestId }} }} }} }}"
            response = httpx.post(
                f"{gateway.base}/graphql",
                json={"query": query},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60
        while (holder := outbox.lease("http")[0]) is None or Holder.parse(holder).pid != gateway.proc.pid:
            assert time.monotonic() < deadline, "the gateway never took the delivery lease"
            time.sleep(0.1)  # its dispatcher polls each second, takes the lease, blocks in the send
        pending = outbox.pending_count("http")
        assert pending >= 3
        os.killpg(gateway.proc.pid, signal.SIGKILL)
        gateway.proc.wait(30)
        killed = datetime.now(UTC)
        holder, until = outbox.lease("http")
        assert Holder.parse(holder).pid == gateway.proc.pid and until > killed  # still "held" by the dead
    finally:
        gateway.stop()

    url, received = receiver
    other = replace(settings, extra={"lineage_transports": "http", "lineage_url": url})
    recorder = LineageRecorder.from_settings(other)  # another process: a build's flush, a new gateway
    started = time.monotonic()
    assert recorder.flush(timeout=LEASE_TTL_S), "delivered within the lease bound"
    took = time.monotonic() - started
    recorder.stop()
    assert took < (until - killed).total_seconds(), "taken over by identity, not by waiting for expiry"
    assert outbox.pending_count("http") == 0
    reads = [e for e in received if e["job"]["name"].startswith("consumer.")]
    assert len(received) == pending and len(reads) == 3
