"""Bearer JWTs: HS256 with the configured secret, a fixed algorithm list, exp/aud/iss enforced."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from civicmesh.settings import Settings

# Fixed: never taken from the token header, so `alg: none` or an RS/HS confusion cannot pass.
ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
LEEWAY_SECONDS = 30


class AuthError(Exception):
    """The request carries no usable identity; the message is safe to return."""


@dataclass(frozen=True)
class Principal:
    subject: str
    claims: dict[str, Any]


def issue_token(settings: Settings, user: str, ttl_hours: float = 12) -> str:
    """A signed token for `user` (the caller checks the user exists: see `civicmesh token`)."""
    now = int(time.time())
    claims = {
        "sub": user,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + int(ttl_hours * 3600),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHMS[0])


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("Missing bearer token.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'.")
    return token.strip()


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=ALGORITHMS,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("Token expired.") from exc
    except jwt.InvalidTokenError as exc:
        # One message for every other failure: which check failed is not the caller's business.
        raise AuthError("Invalid token.") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("Invalid token.")
    return Principal(subject=subject, claims=claims)


def authenticate(settings: Settings, authorization: str | None) -> Principal:
    return verify_token(settings, bearer_token(authorization))
