"""Front-end files served from this process, never from a CDN: pinned, hashed, cached for good.

Vendor files (Vega, Vega-Lite, vega-embed, axe-core) are npm packages pinned in
`static/package.json` + `static/package-lock.json`, installed at *install* time (`make install` runs
`npm ci --ignore-scripts` into the git-ignored `static/node_modules/`), and served at
`/static/vendor/<package>@<version>/<path>` (the unpkg layout). `static/integrity.json` holds each
file's SRI hash (sha384, W3C Subresource Integrity): pages put it in `integrity=`, and the server
refuses to serve a file whose bytes differ from it. After changing a version, run
`npm ci --ignore-scripts` in `static/` and `python -m portal.assets` to rewrite that file.

The portal's own files (its CSS, its script that draws charts, the district boundaries for Vega
maps: `static/districts.geojson`, RFC 7946, written by `python -m civicmesh.synthetic.districts`
from the generator's constants, served turned for d3-geo by `for_d3_geo`) are served from memory
at `/static/<stem>.<sha256 prefix><suffix>`: a new content is a new URL. All asset URLs are
immutable (`Cache-Control: public, max-age=31536000, immutable`) and sent with
`X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route, Router

from gateway.ide import _installed_version
from meshcore.settings import PORTAL_MODULES_ENV, node_modules_dir  # the same check GraphiQL's files get

STATIC_DIR = Path(__file__).with_name("static")
INTEGRITY_FILE = STATIC_DIR / "integrity.json"
DISTRICTS_FILE = STATIC_DIR / "districts.geojson"  # RFC 7946: exterior rings counter-clockwise
STATIC_PATH = "/static"
MODULES_ENV = PORTAL_MODULES_ENV
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
INSTALL_HINT = "Install them with `make install` (npm ci --ignore-scripts in graphql/portal/static/)."

# name a template uses -> (npm package, file inside it): the only vendor files ever served
VENDOR_FILES = {
    "vega": ("vega", "build/vega.min.js"),
    "vega-lite": ("vega-lite", "build/vega-lite.min.js"),
    "vega-embed": ("vega-embed", "build/vega-embed.min.js"),
    "axe-core": ("axe-core", "axe.min.js"),
}
MEDIA_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".geojson": "application/geo+json",
}  # RFC 7946 §12


def for_d3_geo(collection: dict[str, Any]) -> dict[str, Any]:
    """The same features with clockwise rings, for d3-geo and so Vega/Vega-Lite `geoshape`: d3 reads
    rings on the sphere, where a counter-clockwise (RFC 7946) ring bounds everything *outside* it,
    and a map of it fills the globe. Measured in Chromium: tests/portal/test_portal_browser.py."""
    features = []
    for feature in collection["features"]:
        rings = [list(reversed(ring)) for ring in feature["geometry"]["coordinates"]]
        features.append({**feature, "geometry": {**feature["geometry"], "coordinates": rings}})
    return {**collection, "features": features}


def _own_files() -> dict[str, bytes]:
    """The portal's own files by name. The district boundaries are oriented for Vega's d3-geo."""
    boundaries = json.loads(DISTRICTS_FILE.read_text(encoding="utf-8"))
    districts = json.dumps(for_d3_geo(boundaries), separators=(",", ":"))
    return {
        "portal.css": (STATIC_DIR / "portal.css").read_bytes(),
        "portal.js": (STATIC_DIR / "portal.js").read_bytes(),
        "districts.geojson": districts.encode(),
    }


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@dataclass(frozen=True)
class Asset:
    url: str  # under STATIC_PATH
    integrity: str
    file: Path | None = None  # vendor files: served from node_modules
    package_version: tuple[str, str] | None = None  # (package, pinned version) for vendor files
    data: bytes = b""  # the portal's own files: served from memory


def pinned_versions() -> dict[str, str]:
    return json.loads((STATIC_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]


def modules_dir() -> Path:
    return node_modules_dir(MODULES_ENV, STATIC_DIR / "node_modules")


class Assets:
    """Every servable file by name (templates) and by URL (the static route)."""

    def __init__(self, modules: Path | None = None) -> None:
        self.modules = modules or modules_dir()

    @cached_property
    def by_name(self) -> dict[str, Asset]:
        versions = pinned_versions()
        integrity = json.loads(INTEGRITY_FILE.read_text(encoding="utf-8"))
        assets: dict[str, Asset] = {}
        for name, (package, path) in VENDOR_FILES.items():
            url = f"vendor/{package}@{versions[package]}/{path}"
            pin = (package, versions[package])
            assets[name] = Asset(url, integrity[url], self.modules / package / path, pin)
        for name, data in _own_files().items():
            stem, dot, suffix = name.partition(".")
            url = f"{stem}.{hashlib.sha256(data).hexdigest()[:12]}{dot}{suffix}"
            assets[name] = Asset(url, sri(data), data=data)
        return assets

    @cached_property
    def by_url(self) -> dict[str, Asset]:
        return {a.url: a for a in self.by_name.values()}

    def url(self, name: str) -> str:
        return f"{STATIC_PATH}/{self.by_name[name].url}"

    def integrity(self, name: str) -> str:
        return self.by_name[name].integrity

    def problem(self, asset: Asset) -> str | None:
        """Why this file cannot be served as pinned (None: it can)."""
        if asset.file is None:
            return None
        if asset.package_version is not None:
            package, version = asset.package_version
            if _installed_version(self.modules, package) != version:
                return f"{package}@{version} is not installed. {INSTALL_HINT}"
        try:
            data = asset.file.read_bytes()
        except OSError:
            return f"{asset.url} is missing. {INSTALL_HINT}"
        return None if sri(data) == asset.integrity else f"{asset.url} is not the pinned file."

    def missing(self) -> list[str]:
        """Names of the files that cannot be served (empty = all ready)."""
        return sorted(name for name, a in self.by_name.items() if self.problem(a) is not None)

    async def serve(self, request: Request) -> Response:
        asset = self.by_url.get(request.path_params["path"])
        if asset is None:
            return PlainTextResponse("Not Found", status_code=404)
        problem = self.problem(asset)
        if problem is not None:
            return PlainTextResponse(problem, status_code=404)
        if asset.file is None:
            media_type = MEDIA_TYPES[Path(asset.url).suffix]
            return Response(asset.data, media_type=media_type, headers=IMMUTABLE)
        return FileResponse(asset.file, headers=IMMUTABLE)

    def app(self) -> Router:
        """Mount at STATIC_PATH: exactly the files above, nothing else from node_modules."""
        return Router(routes=[Route("/{path:path}", self.serve, methods=["GET", "HEAD"])])


def write_integrity(modules: Path | None = None) -> dict[str, str]:
    """Hash the installed vendor files at their pinned versions into integrity.json."""
    modules = modules or modules_dir()
    versions = pinned_versions()
    table: dict[str, str] = {}
    for package, path in VENDOR_FILES.values():
        if _installed_version(modules, package) != versions[package]:
            raise SystemExit(f"{package}@{versions[package]} is not installed. {INSTALL_HINT}")
        table[f"vendor/{package}@{versions[package]}/{path}"] = sri((modules / package / path).read_bytes())
    INTEGRITY_FILE.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    sys.stdout.write(json.dumps(write_integrity(), indent=2) + "\n")
