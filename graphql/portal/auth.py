"""Sign-in and sign-out.

Production: the OpenID Connect Core 1.0 authorization-code flow with PKCE (RFC 7636, S256) against
the organisation's provider, through Authlib's Starlette client. The provider is found by
discovery (`Settings.oidc_discovery_url`); `state`, `nonce` and the PKCE verifier live in the
session; the ID token's signature is checked against the provider's JWKS and its `iss` (exactly
CIVICMESH_OIDC_ISSUER), `aud` (our client id), `exp`, `iat` and `nonce` are checked. The user is
the token's `sub`, the same claim a bearer token maps to (`gateway.auth.Principal`). Any failure
is a "Sign-in failed" page (400, or 503 when the provider cannot be reached), logged, with no session.

Demo mode (CIVICMESH_DEMO): a labelled persona picker over the staff directory (policies/users.yaml).
After sign-in the browser goes to `next` only if it is a same-site relative path (redirects.py).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth, OAuthError, StarletteOAuth2App
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from meshcore.settings import Settings
from portal import sessions
from portal.backend import backend
from portal.pages import Pages, base_path
from portal.redirects import safe_next

log = logging.getLogger(__name__)

try:  # Authlib's HTTP client uses httpx2 when it is installed, else httpx (authlib ..._compat)
    import httpx2
except ImportError:  # pragma: no cover - depends on the environment
    httpx2 = httpx  # type: ignore[misc]  # one name for either client module
# A provider that cannot be reached (connection, timeout, HTTP status) is a 503, not a refusal.
UNREACHABLE = (httpx.HTTPError, httpx2.HTTPError)

SCOPE = "openid profile email"
# ID-token claims kept in the session (the rest, e.g. at_hash, is of no use after sign-in)
KEPT_CLAIMS = ("sub", "iss", "aud", "exp", "iat", "email", "name", "preferred_username")
NEXT_KEY = "next_after_sign_in"


def oidc_client(settings: Settings) -> StarletteOAuth2App | None:
    """The provider's client, or None when sign-in with it is not configured."""
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        return None
    oauth = OAuth()
    oauth.register(
        name="organisation",
        server_metadata_url=settings.oidc_discovery_url,
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    return oauth.create_client("organisation")


class SignIn:
    def __init__(self, settings: Settings, pages: Pages) -> None:
        self.settings = settings
        self.pages = pages
        self.oidc = oidc_client(settings)

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login_page, methods=["GET"], name="portal_login"),
            Route("/login/oidc", self.oidc_start, methods=["GET"], name="portal_oidc_start"),
            Route("/auth/callback", self.oidc_callback, methods=["GET"], name="portal_oidc_callback"),
            Route("/login/demo", self.demo_sign_in, methods=["POST"], name="portal_demo_login"),
            Route("/logout", self.sign_out, methods=["POST"], name="portal_logout"),
        ]

    async def login_page(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if sessions.signed_in(request) is not None:
            return RedirectResponse(target, status_code=303)
        personas = self._personas(request) if self.settings.demo_mode else []
        configured = self.oidc is not None or bool(personas)
        return self.pages.render(
            request,
            "login.html",
            200 if configured else 503,
            oidc=self.oidc is not None,
            personas=personas,
            next=target,
        )

    def _personas(self, request: Request) -> list[dict[str, Any]]:
        policy = backend(request).policy
        return [
            {
                "name": u.name,
                "display_name": u.display_name,
                "department": u.department,
                "roles": [f"{role} in {dept}" for role, dept in policy.roles(u.name)],
            }
            for u in policy.users()
        ]

    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return self.pages.error(request, 404, "Sign-in with an identity provider is not configured.")
        request.session[NEXT_KEY] = safe_next(request.query_params.get("next"))
        redirect_uri = str(request.url_for("portal_oidc_callback"))
        try:
            return await self.oidc.authorize_redirect(request, redirect_uri)
        except UNREACHABLE as exc:
            log.warning("oidc discovery failed: %s", exc)
            return self.pages.error(
                request, 503, "The identity provider cannot be reached.", "Sign-in failed"
            )

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return self.pages.error(request, 404, "Sign-in with an identity provider is not configured.")
        target = safe_next(request.session.get(NEXT_KEY))
        try:
            claims = await self._verified_claims(request)
        except UNREACHABLE as exc:
            log.warning("oidc sign-in failed: provider unreachable: %s", exc)
            return self.pages.error(
                request, 503, "The identity provider cannot be reached.", "Sign-in failed"
            )
        except Exception as exc:  # every other failure (state, code, PKCE, signature, claims) refuses
            log.warning("oidc sign-in refused: %s: %s", type(exc).__name__, exc)
            message = (
                "The identity provider's answer could not be verified. Start again from the sign-in page."
            )
            return self.pages.error(request, 400, message, "Sign-in failed")
        subject = claims["sub"]
        user = backend(request).policy.user(subject)
        name = user.display_name if user else str(claims.get("name") or claims.get("email") or subject)
        sessions.begin(request, subject, {k: claims[k] for k in KEPT_CLAIMS if k in claims}, name, "oidc")
        log.info("portal sign-in: %s via oidc", subject)
        return RedirectResponse(target, status_code=303)

    async def _verified_claims(self, request: Request) -> dict[str, Any]:
        assert self.oidc is not None
        # OIDC Core §3.1.3.7: `iss` is exactly the configured issuer and `aud` contains our client id
        # (Authlib alone checks only `azp` when `aud` lacks us, so a token naming us in `azp` passed).
        options = {
            "iss": {"essential": True, "values": [self.settings.oidc_issuer]},
            "aud": {"essential": True, "values": [self.settings.oidc_client_id]},
            "sub": {"essential": True},
        }
        token = await self.oidc.authorize_access_token(request, claims_options=options)
        claims = token.get("userinfo")
        if not claims or not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise OAuthError(description="no verified ID token in the token response")
        return dict(claims)

    async def demo_sign_in(self, request: Request) -> Response:
        if not self.settings.demo_mode:
            log.warning("persona sign-in refused outside demo mode")
            return self.pages.error(request, 404, "There is no persona sign-in outside demo mode.")
        form = await request.form()
        persona = str(form.get("persona") or "")
        user = backend(request).policy.user(persona)
        if user is None:
            log.warning("persona sign-in refused: unknown persona %r", persona[:80])
            return self.pages.error(request, 400, "Pick one of the listed personas.")
        sessions.begin(request, user.name, {"sub": user.name}, user.display_name, "demo")
        log.info("portal sign-in: %s via demo persona", user.name)
        return RedirectResponse(safe_next(str(form.get("next") or "")), status_code=303)

    async def sign_out(self, request: Request) -> Response:
        user = sessions.signed_in(request)
        sessions.end(request)
        if user is not None:
            log.info("portal sign-out: %s", user.principal.subject)
        return RedirectResponse(base_path(request) + "/login", status_code=303)
