"""What the portal needs from the process it runs in, and its one way to read: `Reader.run`.

The portal is mounted inside the gateway app (`civicmesh.asgi.create_app`), whose lifespan builds one
`gateway.app.Gateway` per process and keeps it in `app.state.gateway`. Pages reach it only through
the members named in `Backend` (no import of `gateway.app`: the portal needs only these members).

Every page view gets one request id (also sent back as `X-Request-Id`). Each GraphQL document a
page runs goes through `Gateway.execute` as the signed-in user with that id: the same decisions,
masks, row scope, access-log records and lineage read events as `POST /graphql`. Documents are fixed
text (portal/documents.py); every value a user typed travels in `variables`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

from gateway.auth import Principal
from gateway.context import CatalogState
from gateway.errors import HTTP_STATUS, UNAUTHENTICATED, GovernedError
from gateway.pipeline import SessionReader
from meshcore.accesslog import AccessLog
from meshcore.settings import Settings
from policies.engine import PolicyEngine

REQUEST_ID_KEY = "portal_request_id"


class Backend(Protocol):
    settings: Settings
    policy: PolicyEngine
    access_log: AccessLog
    state: CatalogState  # only for the spec `policies.explain` needs, after `product(name:)` found it
    session_reader: SessionReader | None

    async def refresh(self) -> None: ...

    async def execute(
        self,
        principal: Principal,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        request_id: str,
        client: str | None,
        operation_name: str | None = None,
    ) -> dict[str, Any]: ...


def backend(request: Request) -> Backend:
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise RuntimeError("the portal runs inside the gateway app: mount it with civicmesh.asgi.create_app")
    return gateway


def request_id(request: Request) -> str:
    """This page view's request id (made on first use)."""
    rid = getattr(request.state, REQUEST_ID_KEY, None)
    if rid is None:
        rid = uuid.uuid4().hex
        setattr(request.state, REQUEST_ID_KEY, rid)
    return rid


class PageError(Exception):
    """A page that cannot be shown as asked: its HTTP status and a message safe to show."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Result:
    """One governed response: `data`, its errors (`message`, `code`) and `extensions.governance`."""

    data: dict[str, Any] | None
    errors: list[dict[str, str]] = field(default_factory=list)
    governance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Result:
        errors = [
            {"message": str(e.get("message", "")), "code": str((e.get("extensions") or {}).get("code", ""))}
            for e in body.get("errors") or ()
        ]
        governance = (body.get("extensions") or {}).get("governance") or {}
        return cls(body.get("data"), errors, governance)

    @property
    def status(self) -> int:
        """The HTTP status a page showing this result answers with (200, or the first error's)."""
        return HTTP_STATUS.get(self.errors[0]["code"], 400) if self.errors else 200

    @property
    def message(self) -> str:
        return "; ".join(dict.fromkeys(e["message"] for e in self.errors))


class Reader:
    """The signed-in user's governed reads within one page view."""

    def __init__(self, request: Request, principal: Principal) -> None:
        self.gateway = backend(request)
        self.principal = principal
        self.request_id = request_id(request)
        self.client = request.client.host if request.client else None
        self.reads = 0  # how many governed requests this page view ran
        self.seconds = 0.0  # and how long they took (the page's `Server-Timing`)

    @property
    def subject(self) -> str:
        return self.principal.subject

    async def run(self, document: str, variables: dict[str, Any] | None = None) -> Result:
        """Execute `document` in-process; a request refused as a whole (401, 503: the access log is
        down, 500) raises PageError with the gateway's status and message."""
        started = time.perf_counter()
        try:
            body = await self.gateway.execute(
                self.principal, document, variables, request_id=self.request_id, client=self.client
            )
        except GovernedError as exc:
            message = str(exc)
            if exc.code == UNAUTHENTICATED:  # the directory does not know this signed-in user
                message = (
                    f"Your account {self.subject} is not in the staff directory, so you may not see "
                    "any data product. Ask an administrator to add you."
                )
            raise PageError(exc.status, message, exc.code) from None
        finally:
            self.reads += 1
            self.seconds += time.perf_counter() - started
        return Result.of(body)
