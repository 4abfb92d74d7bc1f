"""The portal session: a signed cookie (itsdangerous, through Starlette's SessionMiddleware).

Cookie `civicmesh_portal`: HttpOnly, SameSite=Lax, Secure whenever the request came over https
(decided per request, so one process serves a TLS proxy and a plain loopback alike), signed with
`Settings.portal_session_key`, valid 8 hours. It holds a session id, the CSRF token and, once
signed in, who the user is — never a token from the identity provider.

`begin()` at sign-in drops everything from before (OWASP Session Management: renew the session
id on any privilege change), so a cookie planted before sign-in (session fixation) never becomes
a signed-in session, and its CSRF token stops working. `end()` at logout empties the session.
Limit: a copy of a signed-in cookie stays valid until it expires (no server-side revocation list).
"""

from __future__ import annotations

import binascii
import json
import secrets
import time
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import itsdangerous
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import Principal

COOKIE = "civicmesh_portal"
MAX_AGE_SECONDS = 8 * 3600  # idle: the cookie is re-signed on every response
ABSOLUTE_SECONDS = 12 * 3600  # since sign-in, however active (OWASP Session Management: absolute timeout)


@dataclass(frozen=True)
class SignedIn:
    """The signed-in user: the identity the gateway's governed operations run as."""

    principal: Principal
    display_name: str
    via: str  # "oidc" | "demo"


class Sessions:
    """SessionMiddleware with the Secure flag set per request scheme (https -> Secure)."""

    def __init__(self, app: ASGIApp, secret_key: str) -> None:
        common: dict[str, Any] = {
            "secret_key": secret_key,
            "session_cookie": COOKIE,
            "max_age": MAX_AGE_SECONDS,
            "same_site": "lax",
        }
        self._plain = SessionMiddleware(app, https_only=False, **common)
        self._secure = SessionMiddleware(app, https_only=True, **common)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._secure if scope.get("scheme") in ("https", "wss") else self._plain
        await app(scope, receive, send)


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created (with a session id) on first use."""
    session = request.session
    if "csrf" not in session:
        session["sid"] = secrets.token_urlsafe(32)
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def begin(request: Request, subject: str, claims: dict[str, Any], display_name: str, via: str) -> None:
    """Sign in: a new session id and CSRF token; nothing from the previous session survives."""
    request.session.clear()
    request.session.update(
        {
            "sid": secrets.token_urlsafe(32),
            "csrf": secrets.token_urlsafe(32),
            "user": {"sub": subject, "claims": claims, "name": display_name, "via": via},
            "login_at": int(time.time()),
        }
    )


def end(request: Request) -> None:
    request.session.clear()


def signed_in(request: Request, now: float | None = None) -> SignedIn | None:
    """The signed-in user, or None (never signed in, signed out, or signed in too long ago)."""
    return _user(request.session, time.time() if now is None else now)


def cookie_reader(secret_key: str) -> Callable[[Request], Principal | None]:
    """Who a request's session cookie signs in, read outside the session middleware (the gateway's
    routes, through `gateway.pipeline.authenticate`): the cookie verified exactly as Starlette's
    SessionMiddleware verifies it (itsdangerous `TimestampSigner`, at most MAX_AGE_SECONDS old),
    then the same checks as `signed_in`. None for no cookie or any failure."""
    signer = itsdangerous.TimestampSigner(str(secret_key))

    def read(request: Request) -> Principal | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            session = json.loads(b64decode(signer.unsign(raw.encode("utf-8"), max_age=MAX_AGE_SECONDS)))
        except (itsdangerous.BadSignature, ValueError, binascii.Error):
            return None
        user = _user(session, time.time()) if isinstance(session, dict) else None
        return user.principal if user else None

    return read


def _user(session: dict[str, Any], now: float) -> SignedIn | None:
    user = session.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("sub"), str) or not user["sub"]:
        return None
    login_at = session.get("login_at")
    if not isinstance(login_at, int) or not 0 <= now - login_at < ABSOLUTE_SECONDS:
        return None
    principal = Principal(subject=user["sub"], claims=dict(user.get("claims") or {}))
    return SignedIn(
        principal=principal, display_name=str(user.get("name") or user["sub"]), via=str(user.get("via", ""))
    )
