"""Front-end files come from this server, at the pinned versions, byte for byte what integrity.json
(and so every page's SRI) says; nothing else under node_modules is reachable."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from civicmesh.synthetic.districts import district_boundaries
from portal import assets
from tests.portal.conftest import Browser

pytestmark = pytest.mark.timeout(120)

LOCK = json.loads((assets.STATIC_DIR / "package-lock.json").read_text(encoding="utf-8"))
installed = pytest.mark.skipif(
    bool(assets.Assets().missing()),
    reason="front-end files not installed (make install runs npm ci in graphql/portal/static)",
)


def test_pins_are_exact_and_locked_with_integrity() -> None:
    pins = assets.pinned_versions()
    assert set(pins) == {"vega", "vega-lite", "vega-embed", "axe-core"}
    for package, version in pins.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{package} is not pinned exactly: {version}"
        locked = LOCK["packages"][f"node_modules/{package}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-")
    # every locked package has an integrity hash, none is fetched from anywhere but the registry
    assert all("integrity" in p for name, p in LOCK["packages"].items() if name)


@installed
@pytest.mark.parametrize("name", sorted(assets.VENDOR_FILES))
def test_vendor_files_are_served_locally_at_the_pinned_version(demo_portal: object, name: str) -> None:
    package, path = assets.VENDOR_FILES[name]
    version = assets.pinned_versions()[package]
    url = f"{demo_portal.url}/static/vendor/{package}@{version}/{path}"  # type: ignore[attr-defined]
    response = httpx.get(url)
    assert response.status_code == 200
    assert (
        assets.sri(response.content)
        == json.loads(assets.INTEGRITY_FILE.read_text())[url.split("/static/")[1]]
    )
    installed_version = json.loads((assets.modules_dir() / package / "package.json").read_text())["version"]
    assert installed_version == version
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"].startswith("text/javascript")
    other = httpx.get(url.replace(f"@{version}/", "@0.0.1/"))
    assert other.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/vega@6.4.0/package.json",
        "/static/vendor/vega@6.4.0/build/vega.js",
        "/static/vendor/vega@6.4.0/../../package-lock.json",
        "/static/node_modules/vega/build/vega.min.js",
        "/static/package.json",
        "/static/integrity.json",
        "/static/portal.css",  # only under its content hash
    ],
)
def test_nothing_else_is_served_from_the_static_folder(demo_portal: object, path: str) -> None:
    assert httpx.get(f"{demo_portal.url}{path}").status_code == 404  # type: ignore[attr-defined]


def test_a_changed_file_is_refused_not_served(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """If node_modules holds other bytes than the pinned ones (tampered, or a partial install), the
    server says so instead of serving them."""
    modules = tmp_path / "node_modules"  # type: ignore[operator]
    (modules / "axe-core").mkdir(parents=True)
    version = assets.pinned_versions()["axe-core"]
    (modules / "axe-core" / "package.json").write_text(json.dumps({"version": version}))
    (modules / "axe-core" / "axe.min.js").write_text("window.evil = true;")
    bundle = assets.Assets(modules)
    assert "axe-core" in bundle.missing()
    assert (
        bundle.problem(bundle.by_name["axe-core"])
        == f"vendor/axe-core@{version}/axe.min.js is not the pinned file."
    )


def test_pages_reference_the_css_with_sri_that_matches_what_is_served(browser: Browser) -> None:
    page = browser.get("/login").text
    href, integrity = re.search(r'<link rel="stylesheet" href="([^"]+)" integrity="([^"]+)">', page).groups()
    assert re.fullmatch(r"/static/portal\.[0-9a-f]{12}\.css", href)
    css = browser.get(href)
    assert css.status_code == 200 and assets.sri(css.content) == integrity
    assert css.headers["cache-control"].endswith("immutable")
    assert "https://" not in page and "http://" not in page  # nothing from another origin


def test_district_boundaries_are_served_as_geojson_for_vega(demo_portal: object) -> None:
    url = assets.Assets().url("districts.geojson")
    response = httpx.get(f"{demo_portal.url}{url}")  # type: ignore[attr-defined]
    assert response.status_code == 200 and response.json() == assets.for_d3_geo(district_boundaries())
    assert response.headers["content-type"] == "application/geo+json"
    assert url.split(".")[-2] == hashlib.sha256(response.content).hexdigest()[:12]
