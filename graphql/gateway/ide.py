"""GraphiQL for demo mode, served from this gateway's own files — never from a CDN at run time.

Strawberry's built-in page loads React, GraphiQL and the explorer plugin from unpkg.com, which a
city intranet (or any closed network) cannot reach: the page stays blank. Here the same files, at
the same versions, are installed from the npm registry at *install* time (`make install` runs
`npm ci` over `ide/package-lock.json` into the git-ignored `ide/node_modules/`), and served under
`/graphiql/static/<package>@<version>/<file>` (the unpkg layout) by `static_app()`, mounted only in
demo mode. `ide/graphiql.html` is Strawberry's template with those URLs (and its SRI hashes, which
the installed files match byte for byte). If the files are missing or not the pinned versions, the
page says how to install them; the API does not need them.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, Router

from meshcore.settings import GRAPHIQL_MODULES_ENV, node_modules_dir

IDE_DIR = Path(__file__).with_name("ide")
TEMPLATE = IDE_DIR / "graphiql.html"
STATIC_PATH = "/graphiql/static"
# Where the npm packages are; another folder (a packaged install) can be named here.
MODULES_ENV = GRAPHIQL_MODULES_ENV
INSTALL_HINT = (
    "Install them with `make install` (it runs `npm ci --ignore-scripts --no-audit --no-fund` in "
    "graphql/gateway/ide/), then reload this page. The API itself works without them: "
    "POST /graphql with an Authorization: Bearer <token> header."
)
# The files a versioned URL may name: {{ static }}/<package>@<version>/<path inside the package>
_ASSET_RE = re.compile(r"\{\{ static \}\}/((?:@[a-z0-9-]+/)?[a-z0-9.-]+)@([0-9][0-9A-Za-z.+-]*)/([\w./-]+)")


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    path: str  # inside the package

    @property
    def url_path(self) -> str:
        return f"{self.package}@{self.version}/{self.path}"


def _assets(template: str) -> dict[str, Asset]:
    found = {Asset(*m.groups()) for m in _ASSET_RE.finditer(template)}
    return {a.url_path: a for a in found}


ASSETS = _assets(TEMPLATE.read_text(encoding="utf-8"))


def modules_dir() -> Path:
    return node_modules_dir(MODULES_ENV, IDE_DIR / "node_modules")


def _installed_version(modules: Path, package: str) -> str | None:
    try:
        return json.loads((modules / package / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


def missing_assets(modules: Path | None = None) -> list[str]:
    """The assets the page needs that are absent or not the pinned version (empty = ready)."""
    modules = modules or modules_dir()
    return sorted(
        a.url_path
        for a in ASSETS.values()
        if _installed_version(modules, a.package) != a.version or not (modules / a.package / a.path).is_file()
    )


def page(request: Request) -> Response:
    """The GraphiQL page (GET /graphql in demo mode), or a page that says how to install it."""
    static = request.scope.get("root_path", "").rstrip("/") + STATIC_PATH
    missing = missing_assets()
    if missing:
        return HTMLResponse(_missing_page(missing), headers={"Cache-Control": "no-store"})
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("{{ static }}", static).replace("{{ install_hint }}", INSTALL_HINT)
    return HTMLResponse(text, headers={"Cache-Control": "no-store"})


def _missing_page(missing: list[str]) -> str:
    items = "".join(f"<li><code>{html.escape(m)}</code></li>" for m in missing)
    hint = html.escape(INSTALL_HINT)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>civicmesh GraphiQL: not installed</title>"
        "</head><body style='font-family:sans-serif;max-width:50em;margin:2em auto'>"
        "<h1>GraphiQL is not installed</h1>"
        "<p>This gateway serves GraphiQL from local files (no CDN at run time), and these are missing "
        f"or not the pinned version:</p><ul>{items}</ul><p>{hint}</p></body></html>"
    )


async def _asset(request: Request) -> Response:
    asset = ASSETS.get(request.path_params["asset"])
    if asset is None:
        return PlainTextResponse("Not Found", status_code=404)
    modules = modules_dir()
    file = modules / asset.package / asset.path
    if _installed_version(modules, asset.package) != asset.version or not file.is_file():
        return PlainTextResponse(f"{asset.url_path} is not installed. {INSTALL_HINT}", status_code=404)
    # The URL names the version: the file never changes under it.
    return FileResponse(file, headers={"Cache-Control": "public, max-age=31536000, immutable"})


def static_app() -> Router:
    """Serves exactly the files the template names (nothing else from node_modules); mount at STATIC_PATH."""
    return Router(routes=[Route("/{asset:path}", _asset, methods=["GET", "HEAD"])])
