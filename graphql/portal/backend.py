"""What the portal needs from the process it runs in: the gateway's catalog state, policy and tokens.

The portal is mounted inside the gateway app (`gateway.app.create_app`), whose lifespan builds one
`gateway.app.Gateway` per process and keeps it in `app.state.gateway`. Pages reach it here, and
only through the members named in `Backend` (no import of `gateway.app`: it imports the portal).
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from civicmesh.settings import Settings
from gateway.auth import AuthError, Principal
from gateway.context import CatalogState
from policies.engine import PolicyEngine


class _Tokens(Protocol):
    def authenticate(self, settings: Settings, authorization: str | None) -> Principal: ...


class Backend(Protocol):
    settings: Settings
    state: CatalogState
    policy: PolicyEngine
    tokens: _Tokens

    async def refresh(self) -> None: ...


def backend(request: Request) -> Backend:
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise RuntimeError("the portal runs inside the gateway app: mount it in gateway.app.create_app")
    return gateway


def bearer_principal(request: Request) -> Principal | None:
    """The caller from `Authorization: Bearer <jwt>` (verified like /graphql), or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    gateway = backend(request)
    try:
        return gateway.tokens.authenticate(gateway.settings, header)
    except AuthError:
        return None
