"""The portal's pages over HTTP (real uvicorn, demo mode, the shipped policy): the catalog's search
and facets, every tab of a product page, masks and the row filter marked on the Data tab, the same
rows and masks in a download, escaped text, and the headers every page carries."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from markupsafe import escape

from policies.engine import PolicyEngine
from portal.pages import CSP
from tests.portal.conftest import PRODUCTS, REPO, XSS_CELL, XSS_DESCRIPTION, Browser

pytestmark = pytest.mark.timeout(180)

ALL = {s.name for s in PRODUCTS}
SR = "public_works.service_requests"
TABS = ("", "/schema", "/data", "/chart", "/map", "/lineage", "/download", "/access")


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    return PolicyEngine.from_dir(REPO / "policies")


def _listed(page: str) -> set[str]:
    return {name for name in ALL if f'href="/products/{name}"' in page}


def _cells(page: str, table_class: str = "rows") -> list[list[str]]:
    """The body rows of the first `<table class=table_class>` as text."""
    body = page.split(f'<table class="{table_class}">', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def test_the_catalog_asks_to_sign_in_first(browser: Browser) -> None:
    response = browser.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2F"


@pytest.mark.parametrize("persona", ["mallory", "bob", "carol", "frank", "dana"])
def test_the_catalog_lists_what_the_policy_lets_the_user_discover(
    browser: Browser, policy: PolicyEngine, persona: str
) -> None:
    """Exactly the engine's `discover` decisions (read through the governed `products` query)."""
    browser.sign_in_as(persona)
    listed = _listed(browser.get("/").text)
    assert listed == {s.name for s in PRODUCTS if policy.decide(persona, s, "discover").allowed}
    assert ("hr.salaries" in listed) == (persona in ("carol", "frank"))  # restricted: owners, auditor
    assert "finance.vendor_payments" in listed  # confidential: discoverable by all staff


def test_search_is_the_gateways_ranked_search_and_facets_narrow_it(browser: Browser) -> None:
    browser.sign_in_as("bob")
    page = browser.get("/?q=pothole").text
    assert _listed(page) == {SR} and "1 of 1 product for “pothole”" in page
    assert _listed(browser.get("/?q=no-such-word").text) == set()
    environment = browser.get("/?department=environment").text
    assert _listed(environment) == {
        "environment.air_quality",
        "environment.noise_levels",
        "environment.water_quality",
    }
    assert _listed(browser.get("/?department=environment&classification=internal").text) == {
        "environment.water_quality"
    }
    assert _listed(browser.get("/?tag=air").text) == {"environment.air_quality"}
    # portal-side facets over what the same response says: I can read / must request, freshness
    assert _listed(browser.get("/?access=request").text) == {"finance.vendor_payments"}
    assert _listed(browser.get("/?access=masked").text) == {SR}
    assert _listed(browser.get("/?freshness=fresh").text) == {SR}  # the only product with an SLA
    card = browser.get("/?q=pothole").text
    assert "You can read it</strong>, with 5 columns masked." in card


def test_every_tab_of_a_product_page_answers(browser: Browser) -> None:
    browser.sign_in_as("alice")
    for tab in TABS:
        response = browser.get(f"/products/{SR}{tab}")
        assert response.status_code == 200, (tab, response.text[-500:])
        assert f"<h1>{SR}</h1>" in response.text and 'aria-current="page"' in response.text
    assert browser.get(f"/products/{SR}/nope").status_code == 404


def test_the_data_tab_marks_masks_and_the_row_filter(browser: Browser) -> None:
    browser.sign_in_as("dana")
    page = browser.get(f"/products/{SR}/data").text
    assert "you see district D3 only" in page
    assert "<code>requester_name</code> (hash)" in page and "<code>requester_phone</code> (redact)" in page
    rows = _cells(page)
    assert rows and {r[3] for r in rows} == {"D3"}
    assert all(r[7].startswith("p_") for r in rows)  # requester_name: a keyed pseudonym
    browser.sign_in_as("alice")  # the owner: no mask, no row filter
    page = browser.get(f"/products/{SR}/data").text
    assert "No masks and no row filter apply to you." in page
    assert {r[3] for r in _cells(page)} > {"D3"}
    assert any(r[7].startswith("Person ") for r in _cells(page))


def test_filters_sort_and_paging_go_to_the_gateway_as_variables(browser: Browser) -> None:
    browser.sign_in_as("alice")
    base = f"/products/{SR}/data?col=category&op=eq&val=pothole&sort=createdAt&dir=DESC&first=10"
    page = browser.get(base).text
    assert "<span data-total-count>30</span>" in page  # 90 rows, one in three a pothole
    first = _cells(page)
    assert len(first) == 10 and {r[2] for r in first} == {"pothole"}
    assert [r[1] for r in first] == sorted((r[1] for r in first), reverse=True)
    after = re.search(r'href="([^"]+after=[^"]+)" rel="next"', page)
    assert after is not None
    second = _cells(browser.get(html.unescape(after.group(1))).text)
    assert len(second) == 10 and second[0][1] < first[-1][1]
    # a value of the wrong type is the gateway's refusal: a 400 page with GraphQL's message
    refused = browser.get(f"/products/{SR}/data?col=priority&op=gt&val=high")
    assert refused.status_code == 400 and "Int cannot represent" in refused.text


def test_a_download_has_the_rows_and_masks_of_the_data_tab(browser: Browser) -> None:
    """Through the portal session: `/exports` takes the same cookie (GET only)."""
    browser.sign_in_as("bob")
    query = "col=category&op=eq&val=pothole&sort=requestId&dir=ASC&first=100"
    data = browser.get(f"/products/{SR}/data?{query}").text
    download = browser.get(f"/products/{SR}/download?{query}").text
    assert "You do not hold the export right" in download  # bob reads, but may not export
    browser.sign_in_as("alice")
    data = browser.get(f"/products/{SR}/data?{query}").text
    download = browser.get(f"/products/{SR}/download?{query}").text
    link = re.search(r'href="(/exports/public_works\.service_requests\.csv[^"]*)"', download)
    assert link is not None
    exported = browser.get(html.unescape(link.group(1)))
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text)))
    rows = _cells(data)
    assert len(table) - 1 == len(rows) == 30
    assert [r[0] for r in table[1:]] == [r[0] for r in rows]
    assert [r[7] for r in table[1:]] == [r[7] for r in rows]  # requester_name, as shown


def test_text_from_products_and_cells_is_escaped(browser: Browser) -> None:
    browser.sign_in_as("mallory")
    name = "environment.water_quality"
    for path in ("/", f"/products/{name}", f"/products/{name}/data"):
        page = browser.get(path).text
        assert XSS_DESCRIPTION not in page and "<b>bold</b>" not in page and "<img" not in page
        assert str(escape(XSS_DESCRIPTION)) in page
    page = browser.get(f"/products/{name}/data").text
    assert str(escape(XSS_CELL)) in page and "onerror=alert(1)>" not in page


def test_layout_landmarks_user_and_security_headers(browser: Browser) -> None:
    browser.sign_in_as("dana")
    for path in ("/", f"/products/{SR}/data", f"/products/{SR}/chart", "/inbox", "/audit", "/products/x.y"):
        response = browser.get(path)
        page = response.text
        assert '<html lang="en">' in page
        assert page.index('class="skip-link" href="#main"') < page.index('<main id="main"')
        assert "<header" in page and "<footer" in page and 'aria-label="Account"' in page
        assert "Signed in as <strong>Dana Diaz</strong>" in page and 'action="/logout"' in page
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
        timing = response.headers["server-timing"]  # W3C Server Timing: the governed reads, the page
        assert re.fullmatch(r'reads;dur=[0-9.]+;desc="[0-9]+ governed requests", page;dur=[0-9.]+', timing)
        assert "<script>" not in page  # no inline script anywhere (CSP would block it anyway)
    assert "script-src 'self'" in CSP and "unsafe" not in CSP and "frame-ancestors 'none'" in CSP


def test_unknown_paths_are_404_not_500(browser: Browser) -> None:
    assert browser.get("/no/such/page").status_code == 404
    assert browser.get("/static/../../etc/passwd").status_code == 404
