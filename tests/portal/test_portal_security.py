"""The portal as attacks that must fail: a hidden product's pages answer exactly like a missing
one's; every refused request is a 4xx page with a message and exactly one refusal in the access
log; the session cookie authenticates only same-site GETs (a download), never a GraphQL POST; and
no page is served while the access log cannot be written."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from meshcore.accesslog import AccessLog, decode_row
from meshcore.store import get_engine
from portal import sessions
from tests.gateway.conftest import Server
from tests.portal.conftest import Browser, csrf_in, make_home
from tests.store_faults import allow_inserts, refuse_inserts

pytestmark = pytest.mark.timeout(180)

TABS = ("", "/schema", "/data", "/chart", "/map", "/lineage", "/download", "/access")


def _records(demo_portal: Any, response: httpx.Response) -> list[dict[str, Any]]:
    """The access-log records of the page view (or API request) that gave `response`."""
    request_id = response.headers["x-request-id"]
    log = AccessLog(get_engine(demo_portal.settings.metadata_url))
    return [decode_row(r) for r in log.rows() if r["request_id"] == request_id]


def _refusals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["decision"] == "deny" or r["error_code"]]


@pytest.mark.parametrize("tab", TABS)
def test_a_hidden_products_page_is_a_missing_ones(browser: Browser, demo_portal: Any, tab: str) -> None:
    """mallory may not discover hr.salaries (restricted): its pages, a product that never existed
    and a name that cannot exist all get the same status and the same bytes."""
    browser.sign_in_as("mallory")
    pages = [
        browser.get(f"/products/{name}{tab}") for name in ("hr.salaries", "hr.no_such", "x.y", "bad%20name")
    ]
    assert {p.status_code for p in pages} == {404}
    assert len({p.content for p in pages}) == 1
    assert "No such product is available to you." in pages[0].text
    for page in pages[:3]:
        records = _records(demo_portal, page)
        assert len(records) == 1 and records[0]["subject"] == "mallory"
    browser.sign_in_as("frank")  # hr's owner sees the very same URL
    assert browser.get(f"/products/hr.salaries{tab}").status_code == 200


def test_the_auditor_may_discover_it(browser: Browser) -> None:
    browser.sign_in_as("carol")
    assert browser.get("/products/hr.salaries").status_code == 200
    refused = browser.get("/products/hr.salaries/data")  # the auditor reads no rows
    assert refused.status_code == 403 and "read needs an explicit grant" in refused.text


def _refused_once(demo_portal: Any, response: httpx.Response, status: int, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text[-800:]
    assert message in response.text
    refusals = _refusals(_records(demo_portal, response))
    assert len(refusals) == 1, [
        (r["action"], r["product"], r["decision"], r["error_code"], r["reason"]) for r in refusals
    ]
    return refusals[0]


def test_every_refused_page_is_a_4xx_with_a_message_and_one_record(
    browser: Browser, demo_portal: Any
) -> None:
    browser.sign_in_as("mallory")
    record = _refused_once(
        demo_portal,
        browser.get("/products/finance.vendor_payments/data"),
        403,
        "only members of finance or holders of a grant may read it",
    )
    assert (record["action"], record["product"], record["error_code"]) == (
        "read",
        "finance.vendor_payments",
        "FORBIDDEN",
    )
    record = _refused_once(
        demo_portal,
        browser.get("/products/public_works.service_requests/data?col=priority&op=gt&val=high"),
        400,
        "Int cannot represent",
    )
    assert record["error_code"] == "BAD_USER_INPUT"
    _refused_once(
        demo_portal,
        browser.get("/products/public_works.service_requests/lineage"),
        403,
        "no rule allows mallory",
    )
    _refused_once(demo_portal, browser.get("/audit"), 403, "You hold the audit right on no product.")
    _refused_once(demo_portal, browser.get("/audit/verify"), 403, "You hold the audit right on no product.")
    masked = browser.get("/products/public_works.service_requests/chart?group=requesterName")
    assert (
        masked.status_code == 200
        and "requester_name" not in masked.text.split('id="group"')[1].split("</select>")[0]
    )
    token = csrf_in(browser.get("/products/public_works.service_requests/access").text)
    empty = browser.post(
        "/products/public_works.service_requests/access",
        {"csrf_token": token, "action": "read_pii", "purpose": "  ", "days": "5"},
    )
    assert _refused_once(demo_portal, empty, 400, "a request needs a purpose")["action"] == "request"
    forever = browser.post(
        "/products/public_works.service_requests/access",
        {"csrf_token": token, "action": "read_pii", "purpose": "ok", "days": "9999"},
    )
    _refused_once(demo_portal, forever, 400, "days must be between 1 and 365")


def test_deciding_is_for_owners_only(browser: Browser, demo_portal: Any) -> None:
    browser.sign_in_as("mallory")
    token = csrf_in(browser.get("/products/finance.vendor_payments/access").text)
    made = browser.post(
        "/products/finance.vendor_payments/access",
        {"csrf_token": token, "action": "read", "purpose": "owners only test", "days": "2"},
    )
    assert made.status_code == 303
    flashed = re.search(
        r"Request #(\d+) for read on finance.vendor_payments", browser.get(made.headers["location"]).text
    )
    assert flashed is not None
    request_id = int(flashed.group(1))
    for persona, status, message in (
        ("mallory", 403, "by its requester"),  # never one's own request
        ("bob", 400, "No such access request."),  # a stranger: as if it did not exist
        ("alice", 400, "No such access request."),  # an owner of another department: a stranger
    ):
        browser.sign_in_as(persona)
        token = csrf_in(browser.get("/inbox").text)
        refused = browser.post(f"/inbox/{request_id}/approve", {"csrf_token": token, "note": ""})
        record = _refused_once(demo_portal, refused, status, message)
        assert record["action"] == "approve"
    browser.sign_in_as("fiona")
    token = csrf_in(browser.get("/inbox").text)
    no_reason = browser.post(f"/inbox/{request_id}/reject", {"csrf_token": token, "reason": " "})
    _refused_once(demo_portal, no_reason, 400, "A rejection needs a reason.")
    done = browser.post(f"/inbox/{request_id}/reject", {"csrf_token": token, "reason": "not needed"})
    assert done.status_code == 303 and done.headers["location"] == "/inbox"
    assert (
        f"Request #{request_id} (mallory: read on finance.vendor_payments) rejected."
        in browser.get("/inbox").text
    )


def test_the_session_authenticates_a_same_site_download_and_nothing_else(
    browser: Browser, demo_portal: Any
) -> None:
    url = "/exports/transportation.bike_counts.csv"
    anonymous = httpx.get(demo_portal.url + url)
    _refused_once(demo_portal, anonymous, 401, "Missing bearer token.")
    browser.sign_in_as("bob")
    assert browser.get(url).status_code == 200
    assert browser.get(url, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    cross_site = browser.get(url, headers={"Sec-Fetch-Site": "cross-site"})
    _refused_once(demo_portal, cross_site, 401, "Missing bearer token.")
    # the cookie never authenticates a POST (no CSRF through /graphql)
    post = browser.http.post("/graphql", json={"query": "{ me { user } }"})
    _refused_once(demo_portal, post, 401, "Missing bearer token.")
    refused = browser.get("/exports/public_works.service_requests.csv")  # bob may read, not export
    assert _refused_once(demo_portal, refused, 403, "")["subject"] == "bob"
    # a signed cookie of a subject the directory does not know is no identity either
    forged = httpx.get(demo_portal.url + url, cookies={sessions.COOKIE: "not-a-signed-cookie"})
    assert forged.status_code == 401


def test_a_signed_out_browser_cannot_download(browser: Browser) -> None:
    browser.sign_in_as("bob")
    assert browser.get("/exports/transportation.bike_counts.csv").status_code == 200
    browser.post("/logout", {"csrf_token": browser.csrf("/")})
    assert browser.get("/exports/transportation.bike_counts.csv").status_code == 401


def test_no_page_while_the_access_log_cannot_be_written(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fail closed: a page whose reads cannot be recorded is a 503 with a message, and no data."""
    server = Server(make_home(tmp_path_factory, "portal_log_down", demo_mode=True))
    server.start()
    browser = Browser(server.url)
    try:
        browser.sign_in_as("alice")
        assert "public_works.service_requests" in browser.get("/").text
        refuse_inserts(server.settings.metadata_url)
        for path in ("/", "/products/public_works.service_requests/data", "/inbox"):
            down = browser.get(path)
            assert down.status_code == 503, path
            assert "The access log is unavailable, so no data can be served." in down.text
            assert "SR-0" not in down.text and "public_works.service_requests</a>" not in down.text
        allow_inserts(server.settings.metadata_url)
        assert browser.get("/products/public_works.service_requests/data").status_code == 200
    finally:
        browser.close()
        server.stop()
