"""The whole path on real parts: generated data -> Dagster build -> published snapshots ->
`civicmesh serve` (uvicorn) -> governed GraphQL answers over HTTP -> access log and lineage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from tests.mesh import BuiltMesh

pytestmark = pytest.mark.slow

QUERY = """{ publicWorks { serviceRequests(first: 50, orderBy: [{requestId: ASC}]) {
  totalCount nodes { requestId district requesterName requesterPhone } } } }"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(built_mesh: BuiltMesh) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "CIVICMESH_HOME": str(built_mesh.settings.home),
        "CIVICMESH_METADATA_URL": built_mesh.settings.metadata_url,
    }
    civicmesh = Path(sys.executable).parent / "civicmesh"
    process = subprocess.Popen(
        [str(civicmesh), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ask(built_mesh: BuiltMesh, url: str, user: str, query: str = QUERY) -> httpx.Response:
    token = issue_token(built_mesh.settings, user, ttl_hours=1)
    return httpx.post(
        f"{url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_alice_reads_service_requests_unmasked(built_mesh: BuiltMesh, served: str) -> None:
    body = _ask(built_mesh, served, "alice").json()
    connection = body["data"]["publicWorks"]["serviceRequests"]
    snapshot = built_mesh.catalog.current("public_works.service_requests")
    assert connection["totalCount"] == snapshot.row_count
    phones = [n["requesterPhone"] for n in connection["nodes"] if n["requesterPhone"]]
    assert phones and all(any(ch.isdigit() for ch in p) for p in phones)
    governance = body["extensions"]["governance"]["public_works.service_requests"]
    assert governance["snapshotId"] == snapshot.id and governance["maskedColumns"] == {}


def test_mallory_sees_what_the_policy_says_pii_masked(built_mesh: BuiltMesh, served: str) -> None:
    alice = _ask(built_mesh, served, "alice").json()["data"]["publicWorks"]["serviceRequests"]
    body = _ask(built_mesh, served, "mallory").json()
    mallory = body["data"]["publicWorks"]["serviceRequests"]
    assert mallory["totalCount"] == alice["totalCount"], "internal: every staff member reads all rows"
    pairs = [(a, m) for a, m in zip(alice["nodes"], mallory["nodes"], strict=True) if a["requesterName"]]
    assert pairs and all(a["requesterName"] != m["requesterName"] for a, m in pairs), "names pseudonymised"
    assert all(m["requesterPhone"] != a["requesterPhone"] for a, m in pairs if a["requesterPhone"])
    masked = body["extensions"]["governance"]["public_works.service_requests"]["maskedColumns"]
    assert {"requester_name", "requester_phone"} <= set(masked)


def test_dana_sees_only_district_d3(built_mesh: BuiltMesh, served: str) -> None:
    alice = _ask(built_mesh, served, "alice").json()["data"]["publicWorks"]["serviceRequests"]
    dana = _ask(built_mesh, served, "dana").json()["data"]["publicWorks"]["serviceRequests"]
    assert 0 < dana["totalCount"] < alice["totalCount"]
    assert {n["district"] for n in dana["nodes"]} == {"D3"}


def test_restricted_hr_is_invisible_to_mallory_and_forbidden_to_the_auditor(
    built_mesh: BuiltMesh, served: str
) -> None:
    hidden = _ask(built_mesh, served, "mallory", "{ hr { employees(first: 1) { totalCount } } }").json()
    missing = _ask(built_mesh, served, "mallory", "{ nosuch { employees(first: 1) { totalCount } } }").json()
    assert hidden["data"] is None
    assert hidden["errors"][0]["extensions"]["code"] == missing["errors"][0]["extensions"]["code"]
    assert hidden["errors"][0]["message"] == missing["errors"][0]["message"].replace("nosuch", "hr")
    carol = _ask(built_mesh, served, "carol", "{ hr { employees(first: 1) { totalCount } } }").json()
    assert carol["errors"][0]["extensions"]["code"] == "FORBIDDEN", "the auditor discovers but reads no rows"


def test_no_token_is_401_unauthenticated(served: str) -> None:
    response = httpx.post(f"{served}/graphql", json={"query": QUERY}, timeout=30)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_every_request_is_in_the_access_log_and_the_chain_verifies(
    built_mesh: BuiltMesh, served: str
) -> None:
    log = AccessLog.from_settings(built_mesh.settings)
    before = log.head()
    _ask(built_mesh, served, "dana")
    httpx.post(f"{served}/graphql", json={"query": QUERY}, timeout=30)
    rows = list(log.rows(after_seq=before))
    assert [r["seq"] for r in rows] == list(range(before + 1, before + len(rows) + 1))
    assert {r["subject"] for r in rows} >= {"dana"}
    assert any(r["subject"] in (None, "") for r in rows), "the 401 is logged too"
    dana = next(r for r in rows if r["subject"] == "dana")
    assert dana["product"] == "public_works.service_requests" and dana["decision"] == "allow"
    assert "D3" in json.dumps(dana["row_filter"])
    assert verify_report(log).first_bad is None
