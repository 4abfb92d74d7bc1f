"""Sign-in with OpenID Connect against a real provider process (tests/portal/oidc_provider.py):
discovery, authorization code + PKCE (S256), RS256 ID token checked against the JWKS. And the
attacks that must fail: a forged state, a code without its PKCE verifier (or injected into another
browser's flow), an ID token for another audience or from another issuer."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.gateway.conftest import Server
from tests.portal.conftest import CLIENT_ID, CLIENT_SECRET, Browser, Provider, free_port, make_home

pytestmark = pytest.mark.timeout(120)


def _start(browser: Browser, next_path: str = "/") -> dict[str, str]:
    """GET /login/oidc: the portal redirects to the provider; returns the authorization request."""
    response = browser.get("/login/oidc", params={"next": next_path})
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def _approve(provider: Provider, request: dict[str, str], username: str, tamper: str = "") -> dict[str, str]:
    """The user signs in at the provider, which redirects back with `code` and `state`."""
    with httpx.Client(base_url=provider.url, timeout=30) as http:
        form = http.get("/authorize", params=request)
        assert form.status_code == 200 and "<form" in form.text
        answer = http.post("/authorize", params=request, data={"username": username, "tamper": tamper})
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}


@pytest.fixture
def oidc_browser(oidc_portal: tuple) -> Browser:
    server, _ = oidc_portal
    b = Browser(server.url)
    yield b
    b.close()


def test_authorization_code_flow_with_pkce_signs_in_as_the_providers_user(
    oidc_portal: tuple, oidc_browser: Browser
) -> None:
    server, provider = oidc_portal
    request = _start(oidc_browser, "/?from=test")
    assert request["client_id"] == CLIENT_ID and request["response_type"] == "code"
    assert request["code_challenge_method"] == "S256" and len(request["code_challenge"]) >= 43
    assert request["state"] and request["nonce"] and "openid" in request["scope"].split()
    assert request["redirect_uri"] == f"{server.url}/auth/callback"

    back = _approve(provider, request, "alice")
    assert back["state"] == request["state"]
    done = oidc_browser.get("/auth/callback", params=back)
    assert done.status_code == 303 and done.headers["location"] == "/?from=test"
    page = oidc_browser.get("/?from=test")
    assert page.status_code == 200
    assert "Signed in as <strong>Alice Alvarez</strong> (<code>alice</code>)" in page.text
    assert "environment.air_quality" in page.text


def test_a_forged_state_is_refused(oidc_portal: tuple, oidc_browser: Browser) -> None:
    _, provider = oidc_portal
    request = _start(oidc_browser)
    back = _approve(provider, request, "alice")
    refused = oidc_browser.get("/auth/callback", params={**back, "state": back["state"] + "x"})
    assert refused.status_code == 400 and "Sign-in failed" in refused.text
    assert oidc_browser.get("/").status_code == 303  # still signed out


def test_the_provider_requires_the_pkce_verifier_the_portal_keeps(
    oidc_portal: tuple, oidc_browser: Browser
) -> None:
    """A stolen code is useless without the verifier that only the portal's session holds."""
    _, provider = oidc_portal
    request = _start(oidc_browser)
    back = _approve(provider, request, "alice")
    token_request = {
        "grant_type": "authorization_code",
        "code": back["code"],
        "redirect_uri": request["redirect_uri"],
    }
    with httpx.Client(base_url=provider.url, auth=(CLIENT_ID, CLIENT_SECRET), timeout=30) as http:
        missing = http.post("/token", data=token_request)
        wrong = http.post("/token", data={**token_request, "code_verifier": "w" * 64})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # An authorization request without PKCE is refused by the provider outright.
    no_pkce = {k: v for k, v in request.items() if not k.startswith("code_challenge")}
    assert httpx.get(f"{provider.url}/authorize", params=no_pkce).status_code == 400


def test_a_code_injected_into_another_browsers_flow_is_refused(oidc_portal: tuple) -> None:
    """Code injection (RFC 9700 §4.5): the attacker's code, delivered to the victim's callback with
    the victim's own state, fails because the victim's PKCE verifier does not match it."""
    server, provider = oidc_portal
    attacker, victim = Browser(server.url), Browser(server.url)
    try:
        attackers_code = _approve(provider, _start(attacker), "mallory")["code"]
        victims_request = _start(victim)
        refused = victim.get(
            "/auth/callback", params={"code": attackers_code, "state": victims_request["state"]}
        )
        assert refused.status_code == 400 and "Sign-in failed" in refused.text
        assert victim.get("/").status_code == 303
    finally:
        attacker.close()
        victim.close()


@pytest.mark.parametrize("tamper", ["aud", "iss"])
def test_an_id_token_for_another_audience_or_from_another_issuer_is_refused(
    oidc_portal: tuple, oidc_browser: Browser, tamper: str
) -> None:
    _, provider = oidc_portal
    request = _start(oidc_browser)
    back = _approve(provider, request, "alice", tamper=tamper)
    refused = oidc_browser.get("/auth/callback", params=back)
    assert refused.status_code == 400 and "Sign-in failed" in refused.text
    assert oidc_browser.get("/").status_code == 303


def test_no_persona_sign_in_outside_demo_mode(oidc_portal: tuple, oidc_browser: Browser) -> None:
    _, provider = oidc_portal
    page = oidc_browser.get("/login")
    assert page.status_code == 200 and "Sign in with your organisation account" in page.text
    assert "Demo personas" not in page.text and "/login/demo" not in page.text
    # Even signed in, with a valid CSRF token, nobody becomes another persona.
    assert (
        oidc_browser.get("/auth/callback", params=_approve(provider, _start(oidc_browser), "bob")).status_code
        == 303
    )
    refused = oidc_browser.post("/login/demo", {"persona": "carol", "csrf_token": oidc_browser.csrf("/")})
    assert refused.status_code == 404
    assert "(<code>bob</code>)" in oidc_browser.get("/").text


def test_a_provider_user_missing_from_the_staff_directory_sees_nothing(
    oidc_portal: tuple, oidc_browser: Browser
) -> None:
    _, provider = oidc_portal
    back = _approve(provider, _start(oidc_browser), "stranger")
    assert oidc_browser.get("/auth/callback", params=back).status_code == 303
    response = oidc_browser.get("/")  # the gateway refuses a subject it does not know: 401
    page = response.text
    assert response.status_code == 401 and "(<code>stranger</code>)" in page
    assert "Your account stranger is not in the staff directory" in page and "air_quality" not in page


def test_an_unreachable_provider_is_a_clear_503_not_a_500(tmp_path_factory: pytest.TempPathFactory) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    extra = {"oidc_issuer": closed, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET}
    server = Server(make_home(tmp_path_factory, "portal_no_provider", demo_mode=False, extra=extra))
    server.start()
    try:
        b = Browser(server.url)
        response = b.get("/login/oidc")
        assert response.status_code == 503 and "The identity provider cannot be reached." in response.text
        callback = b.get("/auth/callback", params={"code": "x", "state": "y"})
        assert callback.status_code == 400 and "Sign-in failed" in callback.text  # no state: refused first
        b.close()
    finally:
        server.stop()


def test_restarting_sign_in_keeps_one_flow_and_the_cookie_small(
    oidc_portal: tuple, oidc_browser: Browser
) -> None:
    """Each flow's state (~0.6 KB) lives in the cookie; Authlib's Starlette integration keeps only
    the latest, so a browser never drops a cookie grown past 4 KB."""
    _, provider = oidc_portal
    requests = [_start(oidc_browser) for _ in range(12)]
    assert len(oidc_browser.http.cookies.get("civicmesh_portal", "")) < 2000
    stale = _approve(provider, requests[0], "alice")  # an older flow of this browser is gone
    assert oidc_browser.get("/auth/callback", params=stale).status_code == 400
    latest = _approve(provider, _start(oidc_browser), "alice")
    assert oidc_browser.get("/auth/callback", params=latest).status_code == 303
