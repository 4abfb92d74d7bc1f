"""GraphiQL in a real browser, offline: headless Debian Chromium opens GET /graphql on a demo-mode
gateway, types a bearer token into the Headers editor and a query into the query editor, runs it, and
the result pane shows the user. Every request the page makes goes to the gateway itself (no CDN).

Chromium is driven over the DevTools protocol with `websockets` (already in the lock, via uvicorn):
no browser download, no extra package. Skips only when Chromium is not installed (`.ci/run` installs
Debian's `chromium`). The screenshot is left in the test's tmp dir.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from gateway import ide
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install -y chromium; `make test` does it)",
)

# Flags Chromium needs here: root (no sandbox), no GPU, and no background calls to Google's hosts
# (the closed network refuses them, and they are not what this test is about).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1400,900",
    "--remote-debugging-port=0",
)

AIR_QUALITY = ProductSpec(
    department="environment",
    product="air_quality",
    classification="public",
    owner="erin@city.example",
    description="Hourly air quality by station.",
    key="reading_id",
    columns=(
        ColumnSpec("reading_id", "integer", "Reading id"),
        ColumnSpec("station", "varchar", "Station"),
        ColumnSpec("pm25", "double", "PM2.5 in ug/m3"),
    ),
)
AIR_QUALITY_SQL = (
    "SELECT CAST(i AS INTEGER) AS reading_id, 'S' || (i % 3) AS station, i * 1.5 AS pm25 FROM range(10) t(i)"
)


@pytest.fixture(scope="module")
def demo_server(server: Any, publish_product: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("graphiql_home")
    settings = Settings.for_home(home, demo_mode=True)
    settings.ensure_dirs()
    publish_product(settings, AIR_QUALITY, AIR_QUALITY_SQL)
    srv = type(server)(settings)  # the conftest Server class, on this home, in demo mode
    srv.start()
    yield srv
    srv.stop()


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands on one page session, events kept."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, _timeout: float = 30, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + _timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}; page text: {self.js('document.body.innerText')!r}"
        )

    def click(self, selector: str) -> None:
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " const r = e.getBoundingClientRect(); return r.width ? [r.x + r.width / 2, r.y + r.height / 2]"
            " : null; })()",
            f"a visible {selector}",
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def select_all(self) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                modifiers=2,  # Ctrl
                key="a",
                code="KeyA",
                windowsVirtualKeyCode=65,
                commands=["selectAll"] if kind == "rawKeyDown" else [],
            )

    def type(self, text: str) -> None:
        self.send("Input.insertText", text=text)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    profile.mkdir()
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes "<port>\n<browser ws path>"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Chromium did not start: {(tmp_path / 'chromium.log').read_text()[-2000:]}"
                )
            time.sleep(0.05)
        port, path = port_file.read_text().split()
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as ws:
            tools = DevTools(ws)
            target = tools.send("Target.createTarget", url="about:blank")["targetId"]
            tools.session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Network"):
                tools.send(f"{domain}.enable")
            yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        log.close()


def _editor_value(scope: str) -> str:
    """JS for the text of the CodeMirror editor inside `scope` (GraphiQL 3 uses CodeMirror 5)."""
    return f"document.querySelector({json.dumps(scope + ' .CodeMirror')})?.CodeMirror.getValue() ?? ''"


@needs_chromium
@pytest.mark.timeout(180)
def test_graphiql_runs_a_query_with_a_bearer_token_offline(
    demo_server: Any, browser: DevTools, tmp_path: Path
) -> None:
    token = demo_server.token("alice")
    browser.send("Page.navigate", url=f"{demo_server.url}/graphql")
    browser.wait_for("!!document.querySelector('.graphiql-query-editor .CodeMirror')", "GraphiQL to render")

    # The headers editor: open its tab, type the Authorization header.
    browser.click(".graphiql-editor-tools button[data-name='headers']")
    browser.wait_for(
        "!!document.querySelector(\".graphiql-editor-tools button[data-name='headers'].active\")", "tab"
    )
    headers_editor = ".graphiql-editor-tool .graphiql-editor:not(.hidden)"
    browser.click(headers_editor + " .CodeMirror-lines")
    browser.select_all()
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    browser.type(headers)
    assert json.loads(browser.js(_editor_value(headers_editor))) == json.loads(headers)

    # The query editor: replace the welcome text with a query, run it with the play button.
    browser.click(".graphiql-query-editor .CodeMirror-lines")
    browser.select_all()
    browser.type("{ me { user } }")
    assert browser.js(_editor_value(".graphiql-query-editor")).split() == ["{", "me", "{", "user", "}", "}"]
    browser.click(".graphiql-execute-button")

    result = _editor_value(".graphiql-response")
    shown = browser.wait_for(
        f"(() => {{ const v = {result}; return v.includes('alice') ? v : null; }})()",
        "the result pane to show the user",
    )
    assert json.loads(shown)["data"]["me"] == {"user": "alice"}
    # ...and it is visible on the page, not only in the editor's model.
    assert "alice" in browser.js("document.querySelector('.graphiql-response').innerText")

    # With the token, the schema loads (re-fetch button): the docs explorer lists the root type.
    browser.click("button[aria-label='Re-fetch GraphQL schema']")
    browser.click("button[aria-label='Show Documentation Explorer']")
    browser.wait_for(
        "document.querySelector('.graphiql-doc-explorer')?.innerText.includes('Query')", "the schema docs"
    )

    shot = tmp_path / "graphiql.png"
    shot.write_bytes(base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"]))
    print(f"screenshot: {shot}")

    # Offline: every request the page made went to the gateway (no CDN), and nothing failed to load.
    requests = [
        e["params"]["request"]["url"] for e in browser.events if e["method"] == "Network.requestWillBeSent"
    ]
    elsewhere = [u for u in requests if not u.startswith((demo_server.url, "data:", "about:"))]
    assert not elsewhere, elsewhere
    assert any("/graphiql/static/graphiql@3.8.3/graphiql.min.js" in u for u in requests), requests
    failed = [e["params"] for e in browser.events if e["method"] == "Network.loadingFailed"]
    assert not failed, failed
    errors = [e["params"] for e in browser.events if e["method"] == "Runtime.exceptionThrown"]
    assert not errors, errors


def test_assets_are_the_pinned_files_and_only_in_demo_mode(demo_server: Any, server: Any) -> None:
    """Each file the page names is served locally, byte for byte what its SRI hash pins (the hashes
    Strawberry's template carries for unpkg); nothing else under node_modules is; not without demo mode."""
    template = ide.TEMPLATE.read_text(encoding="utf-8")
    pinned = dict(re.findall(r'="\{\{ static \}\}/([^"]+)"\s+integrity="sha384-([^"]+)"', template))
    assert set(pinned) == set(ide.ASSETS) and len(pinned) == 7
    for path, digest in pinned.items():
        response = demo_server.client.get(f"{ide.STATIC_PATH}/{path}")
        assert response.status_code == 200, (path, response.text[:200])
        assert base64.b64encode(hashlib.sha384(response.content).digest()).decode() == digest, path
        assert "immutable" in response.headers["cache-control"]
        assert server.client.get(f"{ide.STATIC_PATH}/{path}").status_code == 404  # not in demo mode
    assert demo_server.client.get(f"{ide.STATIC_PATH}/react@18.2.0/package.json").status_code == 404
    assert (
        demo_server.client.get(f"{ide.STATIC_PATH}/react@18.3.0/umd/react.production.min.js").status_code
        == 404
    )
    page = demo_server.client.get("/graphql", headers={"accept": "text/html"}).text
    assert "unpkg" not in page and f'src="{ide.STATIC_PATH}/graphiql@3.8.3/graphiql.min.js"' in page


def test_without_the_assets_the_page_says_how_to_install_them_and_the_api_works(
    demo_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ide.MODULES_ENV, str(tmp_path / "empty"))
    page = demo_server.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "GraphiQL is not installed" in page.text and "make install" in page.text and "npm ci" in page.text
    asset = demo_server.client.get(f"{ide.STATIC_PATH}/graphiql@3.8.3/graphiql.min.js")
    assert asset.status_code == 404 and "make install" in asset.text
    assert demo_server.gql("{ me { user } }", "bob")["data"]["me"] == {"user": "bob"}
