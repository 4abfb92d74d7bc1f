"""A real gateway for the policy tests: the app under uvicorn on a free port, in a thread; and a
publisher of the demo products (one row of NULLs each: these tests look at rights, not rows)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable

import duckdb
import httpx
import uvicorn

from civicmesh.asgi import create_app
from gateway.auth import issue_token
from meshcore.catalog import Catalog
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine


def publish(settings: Settings, specs: Iterable[ProductSpec]) -> None:
    catalog = Catalog(get_engine(settings.metadata_url)).ensure_schema()
    for spec in specs:
        columns = ", ".join(f"CAST(NULL AS {c.data_type}) AS {c.name}" for c in spec.columns)
        con = duckdb.connect()
        try:
            con.execute(f"CREATE TABLE t AS SELECT {columns}")
            written = write_snapshot(con, "t", settings.snapshots_dir / spec.department / spec.product)
        finally:
            con.close()
        catalog.publish(spec, written)


class Served:
    """The gateway app under uvicorn on a free port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        self.settings = settings
        self.token = issue_token(settings, "alice", 1)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def me(self) -> httpx.Response:
        """Any request lets the gateway look for policy changes (at most once a second)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.client.post("/graphql", json={"query": "{ me { user } }"}, headers=headers)

    def until(self, condition: Callable[[dict], bool]) -> dict:
        deadline = time.monotonic() + 60
        while True:
            assert self.me().status_code == 200
            ready = self.client.get("/readyz").json()
            if condition(ready):
                return ready
            assert time.monotonic() < deadline, ready
            time.sleep(0.2)

    def gql(self, user: str, query: str, variables: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {issue_token(self.settings, user, 1)}"}
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
