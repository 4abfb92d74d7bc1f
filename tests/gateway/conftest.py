# ruff: noqa: E402 - the sys.path fix below must run before the gateway imports
"""A tmp CIVICMESH home with hand-made snapshots, and a real uvicorn server over it."""

from __future__ import annotations

import sys
from pathlib import Path

# pytest puts tests/ on sys.path, where tests/gateway/ would make `gateway` a namespace package
# (the editable install's finder comes after the path finder). Put the real package first.
_GRAPHQL_DIR = str(Path(__file__).resolve().parents[2] / "graphql")
if _GRAPHQL_DIR not in sys.path:
    sys.path.insert(0, _GRAPHQL_DIR)
if "gateway" in sys.modules and getattr(sys.modules["gateway"], "__file__", None) is None:
    del sys.modules["gateway"]

import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import duckdb
import httpx
import pytest
import uvicorn

from civicmesh.asgi import create_app
from gateway.auth import issue_token
from gateway.serving import uvicorn_options
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.snapshots import snapshot_order, write_snapshot
from meshcore.store import dispose_all, get_engine

if TYPE_CHECKING:
    from tests.pg import PgCluster

REPO = Path(__file__).resolve().parents[2]

SERVICE_REQUESTS = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Citizen service requests: potholes, graffiti, streetlights.",
    key="request_id",
    scope_column="district",
    cluster_by=(("created_at", "DESC"),),  # written newest first within a district, as publish does
    freshness_sla_hours=24,
    tags=("operations",),
    columns=(
        ColumnSpec("request_id", "varchar", "Request id"),
        ColumnSpec("created_at", "timestamp", "When it was filed"),
        ColumnSpec("category", "varchar", "What kind of problem"),
        ColumnSpec("district", "varchar", "City district"),
        ColumnSpec("priority", "integer", "1 = urgent"),
        ColumnSpec("response_hours", "double", "Hours until closed"),
        ColumnSpec("closed_on", "date", "Day it was closed"),
        ColumnSpec("requester_name", "varchar", "Who filed it", ("pii",), "hash"),
        ColumnSpec("requester_email", "varchar", "Contact email", ("pii",), "hash"),
        ColumnSpec("requester_phone", "varchar", "Contact phone", ("pii",), "redact"),
        ColumnSpec("address", "varchar", "Street address", ("pii",), "partial"),
        ColumnSpec("latitude", "double", "Location", ("pii",), "generalize"),
    ),
)

AIR_QUALITY = ProductSpec(
    department="environment",
    product="air_quality",
    classification="public",
    owner="erin@city.example",
    description="Hourly air quality by station.",
    key="reading_id",
    unscoped="measured city-wide: stations do not belong to one district",
    columns=(
        ColumnSpec("reading_id", "integer", "Reading id"),
        ColumnSpec("station", "varchar", "Station"),
        ColumnSpec("pm25", "double", "PM2.5 in ug/m3"),
    ),
)

VENDOR_PAYMENTS = ProductSpec(
    department="finance",
    product="vendor_payments",
    classification="confidential",
    owner="erin@city.example",
    description="Payments to vendors.",
    key="payment_id",
    columns=(
        ColumnSpec("payment_id", "integer", "Payment id"),
        ColumnSpec("vendor", "varchar", "Vendor"),
        ColumnSpec("amount", "double", "Amount"),
    ),
)

SALARIES = ProductSpec(
    department="hr",
    product="salaries",
    classification="restricted",
    owner="frank@city.example",
    description="Staff salaries.",
    key="employee_id",
    columns=(
        ColumnSpec("employee_id", "integer", "Employee"),
        ColumnSpec("salary", "double", "Salary"),
    ),
)

SERVICE_REQUESTS_SQL = """
SELECT
    printf('SR-%04d', i) AS request_id,
    TIMESTAMP '2026-01-01 00:00:00' + INTERVAL (i) HOUR AS created_at,
    ['pothole', 'graffiti', 'streetlight'][i % 3 + 1] AS category,
    'D' || (i % 9 + 1) AS district,
    CAST(i % 4 + 1 AS INTEGER) AS priority,
    CAST(i AS DOUBLE) / 2 AS response_hours,
    CASE WHEN i % 5 = 0 THEN NULL ELSE DATE '2026-02-01' + CAST(i AS INTEGER) END AS closed_on,
    'Person ' || i AS requester_name,
    'person' || i || '@mail.example' AS requester_email,
    '+1-555-01' || lpad(CAST(i AS VARCHAR), 2, '0') AS requester_phone,
    i || ' Main Street' AS address,
    40.712776 + i / 1000.0 AS latitude
FROM range(90) t(i)
"""


def publish(settings: Settings, spec: ProductSpec, sql: str) -> Any:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {sql}")
        written = write_snapshot(
            con, "t", settings.snapshots_dir / spec.department / spec.product, snapshot_order(spec)
        )
    finally:
        con.close()
    return Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema().publish(spec, written)


@pytest.fixture(scope="session")
def publish_product() -> Any:
    """`publish(settings, spec, sql)` for tests that add products while the server runs."""
    return publish


def _gateway_home(home: Path, metadata_url: str) -> Settings:
    """A home with the four hand-made products published into the store at `metadata_url`."""
    settings = Settings(home=home, metadata_url=metadata_url, demo_mode=False)
    settings.ensure_dirs()
    publish(settings, SERVICE_REQUESTS, SERVICE_REQUESTS_SQL)
    publish(
        settings,
        AIR_QUALITY,
        "SELECT CAST(i AS INTEGER) AS reading_id, 'S' || (i % 3) AS station, "
        "i * 1.5 AS pm25 FROM range(10) t(i)",
    )
    publish(
        settings,
        VENDOR_PAYMENTS,
        "SELECT CAST(i AS INTEGER) AS payment_id, 'V' || i AS vendor, i * 100.0 AS amount FROM range(5) t(i)",
    )
    publish(
        settings,
        SALARIES,
        "SELECT CAST(i AS INTEGER) AS employee_id, 50000.0 + i AS salary FROM range(5) t(i)",
    )
    return settings


@pytest.fixture(scope="session")
def gateway_home() -> Any:
    """`gateway_home(home, metadata_url) -> Settings`: a fresh home with the four products published."""
    return _gateway_home


@pytest.fixture(scope="module")  # each test module its own home: none sees what another published
def gw_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("civicmesh_home")
    yield _gateway_home(home, f"sqlite:///{home / 'metadata.db'}")
    dispose_all()


@pytest.fixture(scope="module")  # each test module its own home: none sees what another published
def pg_gw_settings(tmp_path_factory: pytest.TempPathFactory, postgres: PgCluster) -> Iterator[Settings]:
    """The same home, its metadata in a database of the session's PostgreSQL cluster."""
    yield _gateway_home(tmp_path_factory.mktemp("civicmesh_home_pg"), postgres.create_database())
    dispose_all()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The app under real uvicorn, with the options `civicmesh serve` uses (`serving.py`)."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.settings = settings
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **{**uvicorn_options(), **options},
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)

    def token(self, user: str, ttl_hours: float = 1) -> str:
        return issue_token(self.settings, user, ttl_hours)

    def post(
        self, query: str, user: str | None = None, variables: dict | None = None, **kw: Any
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers, **kw
        )

    def gql(self, query: str, user: str, variables: dict | None = None) -> dict[str, Any]:
        response = self.post(query, user, variables)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")  # each test module its own home: none sees what another published
def server(gw_settings: Settings) -> Iterator[Server]:
    srv = Server(gw_settings)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")  # each test module its own home: none sees what another published
def pg_server(pg_gw_settings: Settings) -> Iterator[Server]:
    srv = Server(pg_gw_settings)
    srv.start()
    yield srv
    srv.stop()
