"""A home can move: a plain copy serves, a backup taken while serving restores to another path and
serves there, and lineage joins (`readersOfDerived`, `lineage show`, `audit readers`) and the
access-log chain still hold, before and after a rebuild in the restored home."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from lineage import naming
from lineage.graph import DATASET, LineageGraph, Node
from tests.mesh import CIVICMESH, BuiltMesh, cli, copy_home, home_env

SR = "public_works.service_requests"
SCORECARD = "city_ops.district_scorecard"
SR_QUERY = "{ publicWorks { serviceRequests(first: 3) { totalCount nodes { requestId district } } } }"
SCORECARD_QUERY = "{ cityOps { districtScorecard(first: 2) { totalCount } } }"
DERIVED = "query($p: String!) { readersOfDerived(product: $p) { subject product reads } }"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """`civicmesh serve` on a home, in its own process, as an operator runs it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def token(self, user: str) -> str:
        result = cli(self.home, "token", user)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def gql(self, query: str, user: str, variables: dict | None = None) -> dict:
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token(user)}"},
        )
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def serve(home: Path) -> Iterator[Served]:
    served = Served(home)
    port = served.url.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [CIVICMESH, "serve", "--port", port],
        env=home_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
            try:
                if served.client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.2)
        yield served
    finally:
        served.client.close()
        proc.terminate()
        proc.wait(30)


def test_a_plain_copy_of_a_home_serves(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "moved")
    result = cli(home, "query", "--as", "alice", SR_QUERY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["data"]["publicWorks"]["serviceRequests"]["totalCount"] > 0


def test_absolute_paths_of_an_older_home_are_migrated(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "moved")
    engine = create_engine(f"sqlite:///{home / 'metadata.db'}")
    with engine.begin() as conn:  # as an older version stored them, under a home since moved away
        conn.execute(text("UPDATE catalog_snapshots SET path = '/gone/old-home/' || path"))
    result = cli(home, "query", "--as", "alice", SR_QUERY)
    assert result.returncode == 0, result.stdout + result.stderr
    with engine.connect() as conn:
        paths = [row[0] for row in conn.execute(text("SELECT path FROM catalog_snapshots"))]
    engine.dispose()
    assert paths and all(p.startswith("snapshots/") for p in paths), paths


def test_legacy_warehouse_names_join_the_stable_ones() -> None:
    legacy = "duckdb:///old/home/warehouse.duckdb"
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": "00000000-0000-4000-8000-000000000001"},
        "job": {"namespace": "civicmesh", "name": "publish.public_works.service_requests"},
        "inputs": [{"namespace": legacy, "name": "warehouse.public_works.service_requests"}],
        "outputs": [{"namespace": naming.product_namespace(), "name": SR}],
    }
    graph = LineageGraph.from_events([event])
    stable = naming.duckdb_dataset("/new/home/warehouse.duckdb", "public_works.service_requests")
    assert graph.has(Node(DATASET, stable.namespace, stable.name))
    assert naming.duckdb_namespace("/a/warehouse.duckdb") == naming.duckdb_namespace("/b/warehouse.duckdb")


def _read_while(served: Served, stop: threading.Event, failures: list[str]) -> None:
    token = served.token("alice")
    with httpx.Client(base_url=served.url, timeout=60) as client:
        while not stop.is_set():
            response = client.post(
                "/graphql", json={"query": SR_QUERY}, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 200 or "errors" in response.json():
                failures.append(response.text)


def _readers(served: Served) -> set[tuple[str, str]]:
    body = served.gql(DERIVED, "carol", {"p": SR})
    assert "errors" not in body, body
    return {(r["subject"], r["product"]) for r in body["data"]["readersOfDerived"]}


def test_backup_while_serving_restores_to_another_path_and_serves(
    built_mesh: BuiltMesh, tmp_path: Path
) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "home")
    backup, restored = tmp_path / "backups" / "monday", tmp_path / "elsewhere" / "home"
    with serve(home) as served:
        assert "errors" not in served.gql(SR_QUERY, "alice")
        assert "errors" not in served.gql(SCORECARD_QUERY, "mallory")  # derived from service requests
        expected = _readers(served)
        assert {("alice", SR), ("mallory", SCORECARD)} <= expected
        stop, failures = threading.Event(), []
        reader = threading.Thread(target=_read_while, args=(served, stop, failures))
        reader.start()
        try:
            result = cli(home, "backup", str(backup))
        finally:
            stop.set()
            reader.join(60)
        assert result.returncode == 0, result.stderr
        assert not failures, failures[:3]
    assert "snapshots verified" in result.stdout

    result = cli(restored, "restore", str(backup))
    assert result.returncode == 0, result.stderr
    assert not (restored / "warehouse.duckdb").exists()  # derived, rebuilt by the next build
    with serve(restored) as served:
        body = served.gql(SR_QUERY, "alice")
        assert body["data"]["publicWorks"]["serviceRequests"]["totalCount"] > 0, body
        assert expected <= _readers(served)
    verify = cli(restored, "audit", "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("OK"), verify.stdout + verify.stderr
    shown = cli(restored, "lineage", "show", SCORECARD, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    upstream = {n["name"] for n in json.loads(shown.stdout)["nodes"]}
    assert {"warehouse.public_works.service_requests", f"publish.{SCORECARD}"} <= upstream, upstream

    # A rebuild in the restored home names the warehouse as before: the derived product still joins.
    build = cli(restored, "build")
    assert build.returncode == 0, build.stderr[-3000:]
    readers = cli(restored, "audit", "readers", "--derived-from", SR, "--format", "json")
    assert readers.returncode == 0, readers.stderr
    assert SCORECARD in readers.stdout and "mallory" in readers.stdout, readers.stdout


def test_restore_refuses_a_home_with_data_and_a_damaged_backup(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    assert cli(built_mesh.settings.home, "backup", str(backup)).returncode == 0
    refused = cli(built_mesh.settings.home, "restore", str(backup))
    assert refused.returncode == 1 and "not empty" in refused.stderr
    snapshot = next((backup / "snapshots").rglob("*.parquet"))
    snapshot.write_bytes(snapshot.read_bytes()[:-1] + b"!")  # one byte changed
    damaged = cli(tmp_path / "new-home", "restore", str(backup))
    assert damaged.returncode == 1 and "not matching the catalog" in damaged.stderr, damaged.stderr
    assert not (tmp_path / "new-home").exists(), "nothing appears when the restore fails"
