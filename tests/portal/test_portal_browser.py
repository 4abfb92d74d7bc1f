"""The portal in real Chromium (Debian's /usr/bin/chromium, driven by Playwright with
`executable_path`; no browser download): keyboard reaches the skip link, sign-in through the demo
persona picker, the placeholder catalog, axe-core finds no serious or critical violation on either
page, every request stays on this server. Then the district map: Vega-Lite `geoshape` draws the
shipped GeoJSON from the served, pinned files, under the page's CSP, with no tile server.
Screenshots are left in the test's tmp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portal.assets import Assets
from tests.portal.conftest import axe as _axe
from tests.portal.conftest import needs_assets, needs_chromium

pytestmark = pytest.mark.timeout(240)


@needs_chromium
@needs_assets
def test_sign_in_with_a_persona_and_axe_finds_no_serious_violation(
    chromium: Any, demo_portal: Any, tmp_path: Path
) -> None:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{demo_portal.url}/")
        assert page.url == f"{demo_portal.url}/login?next=%2F"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        assert _axe(page) == []
        page.screenshot(path=str(tmp_path / "login.png"), full_page=True)

        page.get_by_role("button", name="Sign in as Mallory Moore").click()
        page.wait_for_url(f"{demo_portal.url}/")
        assert page.get_by_role("heading", level=1).inner_text() == "Find data products"
        assert "Signed in as Mallory Moore" in page.get_by_role("navigation", name="Account").inner_text()
        assert page.get_by_text("environment.air_quality").count() == 1
        assert page.get_by_text("hr.salaries").count() == 0
        assert _axe(page) == []
        page.screenshot(path=str(tmp_path / "catalog.png"), full_page=True)

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(f"{demo_portal.url}/login")
        assert not [u for u in requests if not u.startswith(demo_portal.url)], requests
        assert errors == [], errors
    finally:
        context.close()


MAP_SPEC = """{
  "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
  "width": 450, "height": 400,
  "data": {"url": "%s", "format": {"type": "json", "property": "features"}},
  "projection": {"type": "mercator"},
  "mark": {"type": "geoshape", "stroke": "#1b1f23"},
  "encoding": {"color": {"field": "properties.district", "type": "nominal"}}
}"""


@needs_chromium
@needs_assets
def test_the_district_map_renders_from_the_shipped_boundaries(
    chromium: Any, demo_portal: Any, tmp_path: Path
) -> None:
    """Nine district polygons that tile the chart, drawn by the pinned Vega files with the CSP-safe
    expression interpreter (`ast: true`), on a page whose CSP forbids eval and other origins."""
    assets = Assets()
    context = chromium.new_context(viewport={"width": 800, "height": 600})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(f"{demo_portal.url}/login")
        for name in ("vega", "vega-lite", "vega-embed"):
            page.add_script_tag(url=assets.url(name))
        boxes = page.evaluate(
            """async (spec) => {
                const main = document.querySelector('main');
                const el = document.createElement('div');
                main.prepend(el);
                // CSP-safe: the expression interpreter instead of eval, no injected <style>
                const options = {renderer: 'svg', actions: false, ast: true, defaultStyle: false,
                                 tooltip: {disableDefaultStyle: true}};
                await vegaEmbed(el, JSON.parse(spec), options);
                const paths = [...el.querySelectorAll('path[aria-roledescription="geoshape"]')];
                return paths.map(p => { const b = p.getBBox(); return [b.x, b.y, b.width, b.height]; });
            }""",
            MAP_SPEC % assets.url("districts.geojson"),
        )
        page.screenshot(path=str(tmp_path / "district-map.png"))
        assert len(boxes) == 9, boxes
        widths, heights = {round(b[2]) for b in boxes}, {round(b[3]) for b in boxes}
        assert max(widths) - min(widths) <= 2 and max(heights) - min(heights) <= 2  # equal cells
        assert 100 < min(widths) < 160  # a third of the 450-px chart each, not the whole globe
        d1, d3, d7 = boxes[0], boxes[2], boxes[6]
        assert d1[0] < d3[0] and d1[1] < d7[1]  # D1 north-west, D3 east of it, D7 south of it
        assert not [u for u in requests if not u.startswith(demo_portal.url)], requests
        assert errors == [], errors
    finally:
        context.close()


@needs_chromium
@needs_assets
def test_text_from_the_data_is_inert_and_the_csp_blocks_inline_script(
    chromium: Any, demo_portal: Any, tmp_path: Path
) -> None:
    """A description and a cell that hold `<script>` and `"><img onerror>` show as text; and were
    markup ever injected, the page's CSP refuses to run its inline handler (a violation is reported)."""
    context = chromium.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(f"{demo_portal.url}/login")
        page.get_by_role("button", name="Sign in as Mallory Moore").click()
        page.wait_for_url(f"{demo_portal.url}/")
        page.goto(f"{demo_portal.url}/products/environment.water_quality/data")
        assert "<script>alert('xss')</script>" in page.locator("p.lead").inner_text()
        assert page.locator("table.rows tbody").get_by_text('"><img src=x onerror=alert(1)>').count() == 1
        assert page.locator("table.rows img").count() == 0
        blocked = page.evaluate(
            """() => new Promise(resolve => {
                document.addEventListener('securitypolicyviolation', e => resolve(e.violatedDirective));
                document.querySelector('main').insertAdjacentHTML(
                    'beforeend', '<img src="data:," onerror="window.__xss = 1">');
                setTimeout(() => resolve(null), 3000);
            })"""
        )
        assert blocked is not None and blocked.startswith("script-src")
        assert page.evaluate("window.__xss") is None and dialogs == []
        page.screenshot(path=str(tmp_path / "xss.png"), full_page=True)
    finally:
        context.close()
