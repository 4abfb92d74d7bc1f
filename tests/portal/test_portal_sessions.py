"""The portal session as attacks that must fail: forms without this session's CSRF token, a session
planted before sign-in (fixation), redirects off-site after sign-in. Plus the cookie's flags,
sign-out, and the persona picker (demo mode only; tests/portal/test_portal_oidc.py covers the rest)."""

from __future__ import annotations

import base64
import json
import logging
import re

import httpx
import pytest

from portal import sessions
from portal.redirects import safe_next
from tests.portal.conftest import Browser, csrf_in

pytestmark = pytest.mark.timeout(120)

EVIL_NEXT = [
    "https://evil.example/",
    "//evil.example",
    "/\\evil.example",
    "/\t/evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "evil.example",
    "/%0a/evil.example" + "\n",
]


def _session_of(response: httpx.Response) -> dict:
    """The signed cookie's payload (itsdangerous: base64 JSON, then timestamp and signature)."""
    cookie = response.cookies.get(sessions.COOKIE)
    assert cookie, "no session cookie set"
    payload = cookie.split(".")[0]
    return json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))


def _post_forms(page: str) -> list[str]:
    return re.findall(r'<form[^>]* method="post"[^>]* action="([^"]+)"', page)


def _every_form(demo_portal: object) -> set[str]:
    """The action of every POST form the portal shows: sign-in and sign-out, a product's request
    form, the inbox's approve / reject / revoke (with a request pending for alice) and the
    requester's withdraw."""
    mallory, alice = Browser(demo_portal.url), Browser(demo_portal.url)  # type: ignore[attr-defined]
    try:
        forms = set(_post_forms(mallory.get("/login").text))
        mallory.sign_in_as("mallory")
        access = mallory.get("/products/public_works.service_requests/access").text
        made = mallory.post(
            "/products/public_works.service_requests/access",
            {"csrf_token": csrf_in(access), "action": "read_pii", "purpose": "a csrf test", "days": "3"},
        )
        assert made.status_code == 303, made.text
        forms |= set(_post_forms(mallory.get("/products/public_works.service_requests/access").text))
        alice.sign_in_as("alice")
        forms |= set(_post_forms(alice.get("/inbox").text)) | set(_post_forms(alice.get("/").text))
    finally:
        mallory.close()
        alice.close()
    return {re.sub(r"/inbox/\d+/", "/inbox/<id>/", f) for f in forms}


def test_every_form_is_refused_without_this_sessions_csrf_token(
    browser: Browser, demo_portal: object, caplog: pytest.LogCaptureFixture
) -> None:
    forms = _every_form(demo_portal)
    # a new form must be added here (and is then tested)
    assert forms == {
        "/login/demo",
        "/logout",
        "/products/public_works.service_requests/access",
        "/inbox/<id>/approve",
        "/inbox/<id>/reject",
        "/inbox/<id>/revoke",
    }
    assert browser.sign_in_as("bob").status_code == 303
    other = Browser(demo_portal.url)  # type: ignore[attr-defined]
    try:
        foreign_token = other.csrf()
        for form in sorted(forms):
            action = form.replace("<id>", "1")
            for token in (None, "", "forged", foreign_token):
                data = {"persona": "carol", "next": "/", "action": "read", "purpose": "x", "days": "1"}
                data |= {} if token is None else {"csrf_token": token}
                with caplog.at_level(logging.WARNING, logger="portal.csrf"):
                    refused = browser.post(action, data)
                assert refused.status_code == 403, (action, token)
                assert "did not come from this portal" in refused.text
                assert any(action in r.getMessage() for r in caplog.records if r.name == "portal.csrf")
                caplog.clear()
            header_forged = browser.post(action, {"persona": "carol"}, headers={"X-CSRF-Token": "forged"})
            assert header_forged.status_code == 403
    finally:
        other.close()
    assert "(<code>bob</code>)" in browser.get("/").text  # neither sign-out nor a persona switch happened
    browser.sign_in_as("alice")  # and the request the forged forms named is still waiting for her
    waiting = browser.get("/inbox").text.split('id="pending-heading"')[1].split('id="active-heading"')[0]
    assert "a csrf test" in waiting


def test_sign_in_rotates_the_session_and_a_planted_cookie_never_signs_in(
    browser: Browser, demo_portal: object
) -> None:
    before = browser.get("/login")
    planted = _session_of(before)  # what an attacker would have set in the victim's browser
    assert planted["sid"] and planted["csrf"] and "user" not in planted
    signed_in = browser.sign_in_as("alice")
    after = _session_of(signed_in)
    assert after["user"]["sub"] == "alice"
    assert after["sid"] != planted["sid"] and after["csrf"] != planted["csrf"]
    # The attacker's copy of the pre-sign-in cookie is still anonymous...
    attacker = Browser(demo_portal.url)  # type: ignore[attr-defined]
    try:
        attacker.http.cookies.set(sessions.COOKIE, before.cookies[sessions.COOKIE])
        assert attacker.get("/").status_code == 303
        # ...and its CSRF token does not work in the victim's new session.
        assert browser.post("/logout", {"csrf_token": planted["csrf"]}).status_code == 403
    finally:
        attacker.close()


def test_session_cookie_is_httponly_lax_signed_and_secure_over_https(demo_portal: object) -> None:
    url = demo_portal.url  # type: ignore[attr-defined]
    plain = httpx.get(f"{url}/login")
    flags = plain.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags
    # Behind a TLS proxy (uvicorn trusts X-Forwarded-Proto from loopback): Secure.
    https = httpx.get(f"{url}/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" in https.headers["set-cookie"].lower()
    # A cookie whose payload was changed (signed in as someone else) is ignored.
    cookie = plain.cookies[sessions.COOKIE]
    payload = base64.b64encode(json.dumps({"user": {"sub": "carol", "via": "demo"}}).encode()).decode()
    forged = httpx.get(f"{url}/", cookies={sessions.COOKIE: payload + cookie[cookie.index(".") :]})
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login")


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_no_redirect_off_site_after_sign_in(browser: Browser, target: str) -> None:
    assert safe_next(target) == "/"
    response = browser.sign_in_as("dana", next_path=target)
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_a_same_site_path_is_where_sign_in_returns(browser: Browser) -> None:
    assert browser.get("/?page=2").headers["location"] == "/login?next=%2F%3Fpage%3D2"
    assert 'name="next" value="/?page=2"' in browser.get("/login?next=%2F%3Fpage%3D2").text
    response = browser.sign_in_as("dana", next_path="/?page=2")
    assert response.headers["location"] == "/?page=2"
    assert safe_next("/products/public_works.service_requests?tab=data#rows") == (
        "/products/public_works.service_requests?tab=data#rows"
    )


def test_demo_mode_shows_a_labelled_persona_picker_of_the_directory(browser: Browser) -> None:
    page = browser.get("/login").text
    assert "Demo mode: synthetic data and sign-in by persona" in page
    for persona in ("alice", "bob", "dana", "erin", "frank", "carol", "mallory"):
        assert f'name="persona" value="{persona}"' in page
    assert "owner in public_works" in page  # alice's role, from the policy
    assert browser.post("/login/demo", {"persona": "nobody", "csrf_token": csrf_in(page)}).status_code == 400


def test_sign_out_ends_the_session(browser: Browser) -> None:
    browser.sign_in_as("erin")
    token = browser.csrf("/")
    out = browser.post("/logout", {"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert "expires=thu, 01 jan 1970" in out.headers["set-cookie"].lower()  # the cookie is deleted
    assert browser.get("/").status_code == 303
    assert browser.get("/logout").status_code == 405  # sign-out is a POST form, never a link


class _Stub:
    def __init__(self, session: dict) -> None:
        self.session = session


def test_a_session_ends_twelve_hours_after_sign_in_however_active() -> None:
    user = {"sub": "bob", "claims": {"sub": "bob"}, "name": "Bob Baker", "via": "demo"}
    signed_at = 1_000_000
    fresh = _Stub({"user": user, "login_at": signed_at})
    assert sessions.signed_in(fresh, now=signed_at + sessions.ABSOLUTE_SECONDS - 1) is not None  # type: ignore[arg-type]
    assert sessions.signed_in(fresh, now=signed_at + sessions.ABSOLUTE_SECONDS) is None  # type: ignore[arg-type]
    assert sessions.signed_in(fresh, now=signed_at - 60) is None  # type: ignore[arg-type]  # from the future
    assert sessions.signed_in(_Stub({"user": user}), now=signed_at) is None  # type: ignore[arg-type]
