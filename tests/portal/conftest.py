# ruff: noqa: E402 - the sys.path fix below must run before the gateway/portal imports
"""Portal fixtures: a CIVICMESH home with one product per classification, real uvicorn servers of
the gateway app (which mounts the portal) in demo mode and in OIDC mode, a real OpenID provider
process, and a browser-like HTTP client that keeps cookies and reads CSRF tokens from forms."""

from __future__ import annotations

import sys
from pathlib import Path

# As in tests/gateway/conftest.py: tests/portal/ would otherwise make `portal` (and tests/gateway/
# `gateway`) a namespace package. Put the real packages first.
_GRAPHQL_DIR = str(Path(__file__).resolve().parents[2] / "graphql")
if _GRAPHQL_DIR not in sys.path:
    sys.path.insert(0, _GRAPHQL_DIR)
for _name in ("portal", "gateway"):
    if _name in sys.modules and getattr(sys.modules[_name], "__file__", None) is None:
        del sys.modules[_name]

import html
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import dispose_all
from portal.assets import Assets
from tests.gateway.conftest import SERVICE_REQUESTS, SERVICE_REQUESTS_SQL, Server, publish

REPO = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = Path(__file__).with_name("oidc_provider.py")
CLIENT_ID, CLIENT_SECRET = "civicmesh-portal", "provider-test-secret"


def _spec(department: str, product: str, classification: str, description: str, **kw: object) -> ProductSpec:
    columns = (ColumnSpec("id", "integer", "Row id"), ColumnSpec("district", "varchar", "District"))
    return ProductSpec(
        department=department,
        product=product,
        classification=classification,
        owner=f"owner@{department}.city.example",
        description=description,
        key="id",
        columns=columns,
        **kw,  # type: ignore[arg-type]
    )


XSS_DESCRIPTION = "<script>alert('xss')</script> & <b>bold</b>"
XSS_CELL = '"><img src=x onerror=alert(1)><script>alert(2)</script>'

# One product per classification, plus a public one without a description (DCAT-AP needs one);
# service requests with PII and a district scope; text meant to be escaped in a description and a cell.
PRODUCTS = (
    _spec("environment", "air_quality", "public", "Hourly air quality by station.", tags=("air", "health")),
    _spec("transportation", "bike_counts", "public", "Bicycles counted per day."),
    _spec("environment", "noise_levels", "public", ""),
    SERVICE_REQUESTS,
    _spec("environment", "water_quality", "internal", XSS_DESCRIPTION),
    _spec("finance", "vendor_payments", "confidential", "Payments to vendors."),
    _spec("hr", "salaries", "restricted", "Staff salaries."),
)
ROWS_SQL = "SELECT CAST(i AS INTEGER) AS id, 'D' || (i % 9 + 1) AS district FROM range(5) t(i)"
XSS_ROWS_SQL = (
    "SELECT CAST(i AS INTEGER) AS id, CASE WHEN i = 0 THEN '" + XSS_CELL.replace("'", "''") + "' "
    "ELSE 'D' || (i % 9 + 1) END AS district FROM range(5) t(i)"
)
ROWS = {SERVICE_REQUESTS.name: SERVICE_REQUESTS_SQL, "environment.water_quality": XSS_ROWS_SQL}


def make_home(tmp_path_factory: pytest.TempPathFactory, name: str, **settings_kw: object) -> Settings:
    home = tmp_path_factory.mktemp(name)
    settings = Settings.for_home(home, **settings_kw)  # type: ignore[arg-type]
    settings.ensure_dirs()
    for spec in PRODUCTS:
        publish(settings, spec, ROWS.get(spec.name, ROWS_SQL))
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(make_home(tmp_path_factory, "portal_demo", demo_mode=True))
    server.start()
    yield server
    server.stop()
    dispose_all()


@dataclass
class Provider:
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def oidc_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Provider]]:
    """The portal (not in demo mode) signing in with a real OpenID provider in another process."""
    provider_port = free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    extra = {"oidc_issuer": issuer, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET}
    server = Server(make_home(tmp_path_factory, "portal_oidc", demo_mode=False, extra=extra))
    log = (tmp_path_factory.mktemp("provider") / "provider.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(PROVIDER_SCRIPT), "--port", str(provider_port), "--client-id", CLIENT_ID,
         "--client-secret", CLIENT_SECRET, "--redirect-uri", f"{server.url}/auth/callback"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(f"{issuer}/.well-known/openid-configuration", process)
        server.start()
        yield server, Provider(issuer, process)
        server.stop()
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the OpenID provider exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the OpenID provider did not start")


class Browser:
    """An HTTP client that behaves like a browser for these tests: keeps cookies, never follows a
    redirect by itself (tests look at each hop), reads hidden form fields."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)

    def get(self, url: str, **kw: object) -> httpx.Response:
        return self.http.get(url, **kw)  # type: ignore[arg-type]

    def post(self, url: str, data: dict[str, str], **kw: object) -> httpx.Response:
        return self.http.post(url, data=data, **kw)  # type: ignore[arg-type]

    def csrf(self, path: str = "/login") -> str:
        return csrf_in(self.get(path).text)

    def sign_in_as(self, persona: str, next_path: str = "/") -> httpx.Response:
        """Demo mode: pick a persona on the sign-in page (with the page's CSRF token; when signed in
        already, the sign-in page sends the browser on, and the catalog's sign-out form has it)."""
        page = self.get("/login")
        token = csrf_in(page.text if page.status_code == 200 else self.get("/").text)
        return self.post("/login/demo", {"persona": persona, "next": next_path, "csrf_token": token})

    def close(self) -> None:
        self.http.close()


def csrf_in(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF field on the page"
    return html.unescape(match.group(1))


@pytest.fixture
def browser(demo_portal: Server) -> Iterator[Browser]:
    b = Browser(demo_portal.url)
    yield b
    b.close()


# -- real Chromium (Debian's /usr/bin/chromium through Playwright's executable_path) ---------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install -y chromium; `make test` does it)",
)
needs_assets = pytest.mark.skipif(
    bool(Assets().missing()),
    reason="front-end files not installed (make install: npm ci in graphql/portal/static)",
)
# Root (no sandbox), no GPU, and no background calls to Google's hosts (the closed network refuses them).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
]
SERIOUS = {"serious", "critical"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def axe(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations (WCAG 2.0/2.1 A and AA rules) on this page."""
    page.add_script_tag(url=Assets().url("axe-core"))
    violations = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', "
        "'best-practice'], resultTypes: ['violations']})).violations"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in violations
        if v["impact"] in SERIOUS
    ]
