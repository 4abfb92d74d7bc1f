"""Several uvicorn worker processes, many concurrent requests: one unbroken access-log chain.
Also: a cached response is still logged, and the cache never crosses callers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gateway.auth import issue_token
from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.settings import available_cpus
from meshcore.store import get_engine
from tests.pg import on_both_backends

# Every test here runs on SQLite and on PostgreSQL (tests/pg.py).
server = pytest.fixture(on_both_backends("server"), name="server")

QUERY = (
    '{ publicWorks { serviceRequests(first: 5, where: {category: {eq: "pothole"}}) '
    "{ nodes { requestId } } } }"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cached_responses_are_logged_and_per_caller(server) -> None:
    log = AccessLog(get_engine(server.settings.metadata_url))
    before = log.head()
    q = "{ publicWorks { serviceRequests(first: 3) { nodes { requesterName district } } } }"
    first, second = server.gql(q, "bob"), server.gql(q, "bob")
    assert first == second
    dana = server.gql(q, "dana")
    assert {n["district"] for n in dana["data"]["publicWorks"]["serviceRequests"]["nodes"]} == {"D3"}
    alice = server.gql(q, "alice")["data"]["publicWorks"]["serviceRequests"]["nodes"]
    assert alice[0]["requesterName"].startswith("Person")
    rows = list(log.rows(after_seq=before))
    assert [r["subject"] for r in rows] == ["bob", "bob", "dana", "alice"]
    assert rows[0]["request_id"] != rows[1]["request_id"]


def test_two_worker_processes_keep_one_chain(server, tmp_path) -> None:
    gw_settings = server.settings  # the home and store of this backend's session server
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "CIVICMESH_DUCKDB_THREADS"},
        "CIVICMESH_HOME": str(gw_settings.home),
        "CIVICMESH_METADATA_URL": gw_settings.metadata_url,
    }
    server_log = (tmp_path / "server.log").open("wb")  # a file, not a pipe: a full pipe blocks the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "civicmesh", "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=server_log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                tail = (tmp_path / "server.log").read_text()[-2000:]
                raise AssertionError(f"server did not start: {tail}")
            time.sleep(0.2)
        # Each worker runs DuckDB on its share of the CPUs (gateway/duck.py memory_report).
        threads = max(1, available_cpus() // 2)
        for _ in range(6):  # a new connection each time: either worker may answer
            detail = httpx.get(f"{base}/readyz", timeout=10).json()["checks"]["snapshot_memory"]["detail"]
            assert detail.endswith(f"queries on {threads} DuckDB thread{'s' if threads != 1 else ''}")
        log = AccessLog(get_engine(gw_settings.metadata_url))
        before = log.head()
        users = ["alice", "bob", "dana", "mallory"]
        tokens = {u: issue_token(gw_settings, u, 1) for u in users}

        def call(i: int) -> int:
            user = users[i % len(users)]
            headers = {"Authorization": f"Bearer {tokens[user]}"} if i % 10 else {}
            query = QUERY.replace("first: 5", f"first: {i % 7 + 1}")  # defeat the response cache
            return httpx.post(
                f"{base}/graphql", json={"query": query}, headers=headers, timeout=60
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(call, range(200)))
        assert statuses.count(401) == 20 and statuses.count(200) == 180
        rows = list(log.rows(after_seq=before))
        assert len(rows) == 200
        assert [r["seq"] for r in rows] == list(range(before + 1, before + 201))
        assert verify_report(log).first_bad is None
        audit = subprocess.run(  # as an auditor checks it: the CLI, with the signed checkpoints
            [sys.executable, "-m", "civicmesh", "audit", "verify", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert json.loads(audit.stdout)["head"] >= before + 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        server_log.close()


def test_serve_refuses_a_duckdb_thread_count_that_is_not_one(tmp_path) -> None:
    env = {**os.environ, "CIVICMESH_HOME": str(tmp_path), "CIVICMESH_DUCKDB_THREADS": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "civicmesh", "serve", "--workers", "2", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "CIVICMESH_DUCKDB_THREADS must be a whole number from 1 to 1024, not 'lots'" in done.stderr
    assert "Traceback" not in done.stderr
