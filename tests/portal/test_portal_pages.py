"""The base layout and the placeholder catalog page: sign-in first, the products the policy lets the
user discover (restricted ones stay invisible), escaped text, and the headers every page carries."""

from __future__ import annotations

import pytest

from policies.engine import PolicyEngine
from portal.pages import CSP
from tests.portal.conftest import PRODUCTS, REPO, Browser

pytestmark = pytest.mark.timeout(120)

ALL = {
    "environment.air_quality",
    "transportation.bike_counts",
    "environment.noise_levels",
    "public_works.service_requests",
    "environment.water_quality",
    "finance.vendor_payments",
    "hr.salaries",
}


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    return PolicyEngine.from_dir(REPO / "policies")


def _listed(page: str) -> set[str]:
    return {name for name in ALL if f"<code>{name}</code>" in page}


def test_the_catalog_asks_to_sign_in_first(browser: Browser) -> None:
    response = browser.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2F"


OPEN = {"environment.air_quality", "public_works.service_requests"}  # public, internal


@pytest.mark.parametrize(
    ("persona", "seen", "unseen"),
    [
        ("mallory", OPEN, {"hr.salaries"}),  # restricted: invisible without a grant
        ("bob", OPEN, {"hr.salaries"}),
        ("carol", ALL, set()),  # the auditor discovers every product
        ("frank", OPEN | {"hr.salaries"}, set()),  # hr's owner sees hr's restricted product
    ],
)
def test_the_catalog_lists_what_the_policy_lets_the_user_discover(
    browser: Browser, policy: PolicyEngine, persona: str, seen: set[str], unseen: set[str]
) -> None:
    """Exactly the engine's `discover` decisions, nothing more, nothing less."""
    browser.sign_in_as(persona)
    listed = _listed(browser.get("/").text)
    assert listed == {s.name for s in PRODUCTS if policy.decide(persona, s, "discover").allowed}
    assert seen <= listed and not unseen & listed


def test_product_text_is_escaped(browser: Browser) -> None:
    browser.sign_in_as("mallory")
    page = browser.get("/").text
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page


def test_layout_landmarks_user_and_security_headers(browser: Browser) -> None:
    browser.sign_in_as("dana")
    response = browser.get("/")
    page = response.text
    assert '<html lang="en">' in page
    assert page.index('class="skip-link" href="#main"') < page.index('<main id="main"')
    assert "<header" in page and "<footer" in page and 'aria-label="Account"' in page
    assert "Signed in as <strong>Dana Diaz</strong>" in page and 'action="/logout"' in page
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe" not in CSP and "frame-ancestors 'none'" in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_unknown_paths_are_404_not_500(browser: Browser) -> None:
    assert browser.get("/no/such/page").status_code == 404
    assert browser.get("/static/../../etc/passwd").status_code == 404
