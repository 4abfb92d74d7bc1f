"""Bearer JWTs: a fixed algorithm list, exp/aud/iss enforced.

HS256 with the civicmesh secret (demo tokens from `civicmesh token`), and RS256 verified against an
organisation's identity provider keys when a JWKS is configured (`CIVICMESH_JWKS_FILE` or
`CIVICMESH_JWKS_URL`, or `settings.extra["jwks_file"|"jwks_url"]`). The key is chosen by algorithm
and `kid`, never taken from the token, so an RS/HS confusion cannot verify.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from meshcore.settings import Settings

# Fixed: never taken from the token header, so `alg: none` or an RS/HS confusion cannot pass.
ALGORITHMS = ["HS256"]
RS_ALGORITHMS = ["RS256"]
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


class _Jwks:
    """The configured identity provider keys: a file (re-read when it changes) or a URL (PyJWT's
    client caches the keys and refetches on an unknown `kid`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: tuple[str, float, jwt.PyJWKSet] | None = None
        self._clients: dict[str, jwt.PyJWKClient] = {}

    def key(self, settings: Settings, token: str) -> Any | None:
        path, url = settings.jwks_file, settings.jwks_url
        if path:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = self._keys_from_file(path)
            matches = [k for k in keys.keys if kid is None or k.key_id == kid]
            return matches[0].key if matches else None
        if url:
            with self._lock:
                client = self._clients.setdefault(url, jwt.PyJWKClient(url))
            return client.get_signing_key_from_jwt(token).key
        return None

    def _keys_from_file(self, path: str) -> jwt.PyJWKSet:
        mtime = Path(path).stat().st_mtime
        with self._lock:
            if self._file is None or self._file[:2] != (path, mtime):
                self._file = (path, mtime, jwt.PyJWKSet.from_json(Path(path).read_text()))
            return self._file[2]


_jwks = _Jwks()


def _key_for(settings: Settings, token: str) -> tuple[Any, list[str]]:
    """(verification key, the one algorithm it may verify) for this token."""
    alg = jwt.get_unverified_header(token).get("alg")
    if alg in RS_ALGORITHMS:
        key = _jwks.key(settings, token)
        if key is None:
            raise jwt.InvalidTokenError("no identity provider key for this token")
        return key, RS_ALGORITHMS
    return settings.jwt_secret, ALGORITHMS


def verify_token(settings: Settings, token: str) -> Principal:
    try:
        key, algorithms = _key_for(settings, token)
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("Token expired.") from exc
    except (jwt.InvalidTokenError, jwt.PyJWKClientError, OSError, ValueError) as exc:
        # One message for every other failure: which check failed is not the caller's business.
        raise AuthError("Invalid token.") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("Invalid token.")
    return Principal(subject=subject, claims=claims)


def authenticate(settings: Settings, authorization: str | None) -> Principal:
    """The principal of an `Authorization: Bearer <jwt>` header; raises AuthError."""
    return verify_token(settings, bearer_token(authorization))


class TokenCache:
    """Verified bearer tokens for a short while, so a client's every request does not re-verify the
    same signature. An entry lasts at most `ttl` seconds (a rotated JWKS takes effect within it)
    and never past the token's own expiry; only tokens that verified are kept."""

    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}

    def authenticate(self, settings: Settings, authorization: str | None) -> Principal:
        """As `authenticate`, answered from the cache while the entry lasts."""
        now = time.time()
        if authorization is not None:
            hit = self._entries.get(authorization)
            if hit is not None and hit[1] > now:
                return hit[0]
        principal = authenticate(settings, authorization)
        assert authorization is not None  # authenticate() refuses a missing header
        exp = principal.claims.get("exp")
        until = min(now + self.ttl, float(exp) if isinstance(exp, int | float) else now)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[authorization] = (principal, until)
        return principal
