"""The portal's acceptance story, in one test, in real Chromium (Debian's, through Playwright's
`executable_path`), on a real mesh built through dbt and Dagster for this module, served by uvicorn
in demo mode:

bob signs in, searches "pothole", opens the product, sees the requester columns masked on the Data
tab; dana sees "district D3 only", a chart with marks and the district map; a CSV download holds
the rows and masks of the Data tab; mallory is refused the rows of a confidential product and
requests read; alice approves in her inbox (and looks at the lineage); mallory's Data tab then shows
rows; carol finds all of it on the access-log page and the log verifies. axe-core reports no serious
or critical violation on any page. Every page's screenshot is left in tests/output/portal/ (its
path is printed)."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Server
from tests.mesh import build, isolated_settings
from tests.portal.conftest import axe, needs_assets, needs_chromium

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), needs_chromium, needs_assets]

SHOTS = Path(__file__).resolve().parents[1] / "output" / "portal"
SR = "public_works.service_requests"
CONTACTS = "public_works.open_request_contacts"
NAMES = {
    "alice": "Alice Alvarez",
    "bob": "Bob Baker",
    "carol": "Carol Chen",
    "dana": "Dana Diaz",
    "mallory": "Mallory Moore",
}


@pytest.fixture(scope="module")
def story_portal(landing_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A mesh of its own, built for real through Dagster from the session's landing files (the story
    grants and logs: the shared `built_mesh` stays as it was), served in demo mode."""
    home = tmp_path_factory.mktemp("story")
    shutil.copytree(landing_dir, home / "landing")
    settings = isolated_settings(home)
    report, lines = build(settings)
    assert report.success, "\n".join(lines + report.failed_steps)
    server = Server(dataclasses.replace(settings, demo_mode=True))
    server.start()
    yield server
    server.stop()


class Visit:
    """One persona's browser: signs in through the persona picker, checks and photographs pages."""

    def __init__(self, chromium: Any, url: str, persona: str, downloads: Path) -> None:
        self.url = url
        self.persona = persona
        self.context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.elsewhere: list[str] = []
        self.page.on("request", lambda r: None if r.url.startswith(url) else self.elsewhere.append(r.url))
        self.downloads = downloads
        self.page.goto(f"{url}/login")
        self.page.locator(f'form:has(input[name="persona"][value="{persona}"]) button').click()
        self.page.wait_for_url(f"{url}/")
        assert (
            f"Signed in as {NAMES[persona]}"
            in self.page.get_by_role("navigation", name="Account").inner_text()
        )

    def go(self, path: str) -> Any:
        return self.page.goto(f"{self.url}{path}")

    def check(self, name: str) -> None:
        """axe: no serious or critical violation; then the screenshot."""
        if self.page.locator("[data-spec]").count():
            self.page.wait_for_selector("[data-rendered]")
        assert axe(self.page) == [], (name, self.page.url)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def column(self, name: str) -> list[str]:
        """The cells of the Data tab's column `name`."""
        headers = [_name(h) for h in self.page.locator("table.rows thead th").all_inner_texts()]
        index = headers.index(name) + 1
        return [
            c.strip()
            for c in self.page.locator(f"table.rows tbody tr td:nth-child({index})").all_inner_texts()
        ]

    def close(self) -> None:
        assert not self.elsewhere, self.elsewhere  # no CDN, no tiles, no other host
        self.context.close()


def _name(header: str) -> str:
    """A column's name from its header's text (which goes on: ", sort" or "masked: hash")."""
    match = re.match(r"[A-Za-z0-9_]+", header.strip())
    assert match is not None, header
    return match.group(0)


def _masked_headers(visit: Visit) -> set[str]:
    return {_name(t) for t in visit.page.locator("table.rows thead th.masked").all_inner_texts()}


def test_the_story(story_portal: Server, chromium: Any, tmp_path: Path) -> None:
    # the mesh is built before Playwright starts its event loop in this thread (Dagster runs asyncio)
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    print(f"\nportal screenshots: {SHOTS}")
    url = story_portal.url

    # bob: sign in, search "pothole", open the product, the requester columns are masked
    bob = Visit(chromium, url, "bob", tmp_path)
    bob.check("01-catalog")
    bob.page.get_by_label("Search by name, tag, description or column").fill("pothole")
    bob.page.get_by_role("button", name="Search").click()
    bob.page.wait_for_url(re.compile(r".*\?q=pothole"))
    bob.check("02-search-pothole")
    bob.page.get_by_role("link", name=SR, exact=True).click()
    bob.page.wait_for_url(f"{url}/products/{SR}")
    bob.check("03-product-about")
    bob.page.get_by_role("navigation", name="Product sections").get_by_role("link", name="Data").click()
    bob.page.wait_for_url(f"{url}/products/{SR}/data")
    assert {"requester_name", "requester_email", "requester_phone"} <= _masked_headers(bob)
    names = [n for n in bob.column("requester_name") if n != "—"]
    assert names and all(re.fullmatch(r"p_[0-9a-f]{20}", n) for n in names)  # keyed pseudonyms
    assert len(set(bob.column("district"))) > 1  # no row filter for bob
    bob.check("04-data-bob-masked")
    bob.go(f"/products/{SR}/schema")
    bob.check("05-schema-bob")

    # dana: district D3 only, on the Data tab, in a chart with marks, on the district map
    dana = Visit(chromium, url, "dana", tmp_path)
    dana.go(f"/products/{SR}/data")
    assert "you see district D3 only" in dana.page.locator("[data-row-filter]").inner_text()
    assert set(dana.column("district")) == {"D3"}
    dana.check("06-data-dana-d3-only")
    dana.page.get_by_role("navigation", name="Product sections").get_by_role("link", name="Chart").click()
    dana.page.wait_for_selector('#chart[data-rendered="true"]')
    assert dana.page.locator("#chart svg .mark-rect path").count() > 3  # one bar per category
    dana.check("07-chart-dana")
    dana.go(f"/products/{SR}/chart?group=openedAt&unit=month&metric=avg&measure=responseHours&mark=line")
    dana.page.wait_for_selector('#chart[data-rendered="true"]')
    assert dana.page.locator("#chart svg .mark-line path").count() == 1
    dana.check("08-chart-dana-line")
    dana.go(f"/products/{SR}/map")
    dana.page.wait_for_selector('#map[data-rendered="true"]')
    assert dana.page.locator('#map svg path[aria-roledescription="geoshape"]').count() >= 1  # D3, coloured
    assert dana.page.locator("#map svg .mark-shape path").count() >= 9 + 1  # every district + D3
    dana.check("09-map-dana")
    dana.close()

    # a CSV download holds the rows and masks of the Data tab (bob exports his department's products)
    query = "col=district&op=eq&val=D5&sort=collisionId&dir=ASC&first=100"
    bob.go(f"/products/transportation.collisions/data?{query}")
    assert {"latitude", "longitude"} <= _masked_headers(bob)
    total = int(bob.page.locator("[data-total-count]").inner_text())
    shown = {c: bob.column(c) for c in ("collision_id", "district", "latitude", "longitude")}
    bob.check("10-data-bob-collisions")
    bob.page.get_by_role("link", name="Download them").click()
    bob.page.wait_for_url(re.compile(r".*/download\?.*"))
    bob.check("11-download-bob")
    with bob.page.expect_download() as download:
        bob.page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "collisions.csv"
    download.value.save_as(path)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == total and 0 < len(shown["collision_id"]) <= len(rows)
    first = rows[: len(shown["collision_id"])]
    assert [r["collision_id"] for r in first] == shown["collision_id"]
    assert {r["district"] for r in rows} == {"D5"}
    for column in ("latitude", "longitude"):  # generalised, identically
        assert [float(r[column]) for r in first] == [float(v) for v in shown[column]]
        assert all(round(float(r[column]), 2) == float(r[column]) for r in rows)
    bob.close()

    # mallory: the confidential product's rows are refused; she requests read
    mallory = Visit(chromium, url, "mallory", tmp_path)
    refused = mallory.go(f"/products/{CONTACTS}/data")
    assert refused.status == 403
    assert "only members of public_works or holders of a grant may read it" in mallory.page.inner_text("main")
    mallory.check("12-data-mallory-refused")
    mallory.page.get_by_role("link", name=f"Request access to {CONTACTS}").click()
    mallory.page.get_by_label("What you need").select_option("read")
    mallory.page.get_by_label("Purpose (the owners read this)").fill("Calling back residents about potholes")
    mallory.page.get_by_label("For how many days").fill("14")
    mallory.page.get_by_role("button", name="Send the request to the owners").click()
    notice = mallory.page.get_by_role("status").inner_text()
    request_id = int(re.search(rf"Request #(\d+) for read on {CONTACTS} was sent", notice).group(1))  # type: ignore[union-attr]
    mallory.check("13-access-mallory-requested")

    # alice approves it in her inbox, and looks at the product's lineage
    alice = Visit(chromium, url, "alice", tmp_path)
    alice.go("/inbox")
    pending = alice.page.locator("table[aria-labelledby=pending-heading] tbody tr", has_text="mallory")
    assert pending.count() == 1 and CONTACTS in pending.inner_text()
    alice.check("14-inbox-alice")
    pending.get_by_label("Note (optional)").fill("for the call-back campaign")
    pending.get_by_role("button", name=f"Approve request {request_id} of mallory").click()
    assert "approved" in alice.page.get_by_role("status").inner_text()
    alice.check("15-inbox-alice-approved")
    alice.go(f"/products/{SR}/lineage")
    assert alice.page.locator("svg.lineage g.node").count() > 3
    alice.check("16-lineage-alice")
    alice.go(f"/products/{SR}/lineage?column=requester_email")
    alice.check("17-lineage-alice-column")
    alice.close()

    # mallory now sees rows, her requester columns masked
    shown_now = mallory.go(f"/products/{CONTACTS}/data")
    assert shown_now.status == 200 and mallory.page.locator("table.rows tbody tr").count() > 0
    assert {"requester_name", "requester_email", "requester_phone"} <= _masked_headers(mallory)
    mallory.check("18-data-mallory-granted")
    mallory.close()

    # carol (auditor) finds all of it in the access log, and the log verifies
    carol = Visit(chromium, url, "carol", tmp_path)
    carol.go(f"/audit?subject=mallory&product={CONTACTS}")
    log = carol.page.locator("table.log tbody").inner_text()
    assert re.search(r"read\s+" + re.escape(CONTACTS) + r"\s+deny", log)
    assert re.search(r"request\s+" + re.escape(CONTACTS) + r"\s+allow", log)
    assert re.search(r"read\s+" + re.escape(CONTACTS) + r"\s+allow", log)
    carol.check("19-audit-mallory")
    carol.go(f"/audit?subject=alice&product={CONTACTS}")
    assert re.search(
        r"approve\s+" + re.escape(CONTACTS) + r"\s+allow", carol.page.locator("table.log tbody").inner_text()
    )
    carol.check("20-audit-alice")
    carol.go(f"/audit?readers={CONTACTS}")
    assert "mallory" in carol.page.locator("table[aria-labelledby=readers-heading]").inner_text()
    carol.go("/audit/verify")
    assert "OK: verified up to record" in carol.page.get_by_role("status").inner_text()
    carol.check("21-audit-verify")
    carol.close()
    print(f"portal screenshots: {sorted(p.name for p in SHOTS.iterdir())}")
