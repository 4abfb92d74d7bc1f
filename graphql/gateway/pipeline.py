"""One request pipeline for every governed route: GraphQL, exports and lineage ingest.

An ASGI middleware around each governed endpoint (`governed(endpoint, ...)` in `app.py`), so no
handler authenticates, reads a body or writes a refusal record itself. In order:

1. a request id (sent back as `X-Request-Id`) and the client address;
2. the method (405), one Authorization header at most (400);
3. the caller (`authenticate`, the one rule for every route and the portal): the bearer token,
   verified once per `auth.TokenCache` entry, or, on GET/HEAD without one, the portal's signed session
   cookie (a browser's download); its subject must be in the staff directory (`admit`): 401
   `UNAUTHENTICATED` otherwise (a valid signature for a stranger is no identity), before a byte of
   the body is read;
4. the body: size (413), arrival time (408), encoding and JSON nesting (400), all checked on the
   raw bytes before any parser sees them, then one JSON object without lone surrogates (400)
   (`http_body`);
5. the handler, with a `RequestContext` in the scope (`request_context(request)`): identity, the
   catalog state of this request, the services, and the request-wide access-log fields;
6. what the handler raises: a `GovernedError` answers with its status and code; anything else is
   HTTP 500 `INTERNAL_SERVER_ERROR` carrying the request id, logged here with its traceback, its
   message never shown.

Every refusal leaves exactly one access-log record (with the route's action: `query`, `export`,
`lineage_ingest`), unless the handler wrote the request's record already (`ctx.recorded`); if the
record cannot be written the answer is 503 `UNAVAILABLE` instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import errors, http_body
from gateway.auth import AuthError, Principal, TokenCache
from gateway.context import RequestContext
from gateway.errors import GovernedError
from gateway.recording import Recorder, error_response
from meshcore.settings import Settings
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

CONTEXT_SCOPE_KEY = "civicmesh.context"
UNKNOWN_SUBJECT = "The token's subject is not in the staff directory."
# A session cookie is sent by the browser on its own, so it authenticates only safe requests from
# this site: unsafe methods need a bearer token (no CSRF through a cookie), and a request the browser
# marks as coming from another site (Fetch Metadata, `Sec-Fetch-Site`) does not get the session.
COOKIE_METHODS = frozenset({"GET", "HEAD"})
COOKIE_FETCH_SITES = frozenset({"same-origin", "none"})

Page = Callable[[Request], Awaitable[Response | None]]
SessionReader = Callable[[Request], Principal | None]


class Services(Protocol):
    """What the pipeline needs from the process's gateway (`app.Gateway`)."""

    settings: Settings
    policy: PolicyEngine
    tokens: TokenCache
    recorder: Recorder
    session_reader: SessionReader | None  # the portal's signed session cookie, if one is mounted

    async def refresh(self) -> None: ...

    def context(self, principal: Principal, fields: dict[str, Any], started: float) -> RequestContext: ...


def authenticate(services: Services, request: Request) -> Principal:
    """Who is calling: `Authorization: Bearer <jwt>` (verified like every token, `auth.TokenCache`),
    or, only when no such header is sent, the request is GET/HEAD and the browser does not mark it
    as cross-site, the portal's signed session (`services.session_reader`). Raises GovernedError
    401 `UNAUTHENTICATED`, or 400 for more than one Authorization header. The subject is checked
    against the directory by `admit`."""
    if len(request.headers.getlist("authorization")) > 1:  # a singleton field (RFC 9110 §5.3)
        raise GovernedError("Send one Authorization header, not several.", errors.BAD_USER_INPUT)
    header = request.headers.get("authorization")
    reader = services.session_reader
    same_site = request.headers.get("sec-fetch-site", "same-origin") in COOKIE_FETCH_SITES
    if header is None and reader is not None and request.method in COOKIE_METHODS and same_site:
        principal = reader(request)
        if principal is not None:
            return principal
    try:
        return services.tokens.authenticate(services.settings, header)
    except AuthError as exc:
        raise GovernedError(str(exc), errors.UNAUTHENTICATED) from None


def admit(services: Services, principal: Principal, fields: dict[str, Any]) -> None:
    """The caller must be in the staff directory (else 401 `UNAUTHENTICATED`: a verified identity
    the directory does not know is no one). Fills the access-log fields `subject` and `roles`."""
    fields["subject"] = principal.subject
    if services.policy.user(principal.subject) is None:
        raise GovernedError(UNKNOWN_SUBJECT, errors.UNAUTHENTICATED)
    fields["roles"] = [f"{r}@{d}" for r, d in services.policy.roles(principal.subject)]


def request_context(request: Request) -> RequestContext:
    """The context the pipeline put in the scope of `request` (KeyError outside the pipeline)."""
    return request.scope[CONTEXT_SCOPE_KEY]


class RequestPipeline:
    """The ASGI middleware. Parameters: `action` names refusals in the access log; `methods` are
    the HTTP methods the route serves; `max_body` bounds the body in bytes; `json_body` parses it
    into `ctx.payload` and requires one JSON object; `page`, if given, may answer a request before
    authentication (the demo-mode GraphiQL page: no data, no token)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        action: str,
        methods: Collection[str],
        max_body: int = 0,
        json_body: bool = False,
        page: Page | None = None,
    ) -> None:
        self.app = app
        self.action = action
        self.methods = frozenset(methods)
        self.max_body = max_body
        self.json_body = json_body
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if self.page is not None:
            page = await self.page(request)
            if page is not None:
                await page(scope, receive, send)
                return
        started = time.perf_counter()
        fields: dict[str, Any] = {"request_id": uuid.uuid4().hex, "client": _client(request)}
        services: Services = request.app.state.gateway
        sent = _Sent(send, fields["request_id"])
        ctx: RequestContext | None = None
        try:
            ctx, receive = await self._admit(services, request, receive, fields, started)
            scope[CONTEXT_SCOPE_KEY] = ctx
            await self.app(scope, receive, sent)
        except GovernedError as exc:
            await self._refuse(services, scope, receive, sent, fields, started, exc, ctx)
        except Exception:
            log.exception("request %s failed", fields["request_id"])
            error = errors.internal(fields["request_id"])
            await self._refuse(services, scope, receive, sent, fields, started, error, ctx)

    async def _admit(
        self,
        services: Services,
        request: Request,
        receive: Receive,
        fields: dict[str, Any],
        started: float,
    ) -> tuple[RequestContext, Receive]:
        """Steps 2-4: the authenticated context with the checked body; raises GovernedError."""
        if request.method not in self.methods:
            allowed = ", ".join(sorted(self.methods))
            message = f"Method {request.method} is not allowed here; use {allowed}."
            raise GovernedError(message, errors.BAD_USER_INPUT, status=405)
        principal = authenticate(services, request)
        admit(services, principal, fields)
        body = await http_body.read_body(receive, request.headers.get("content-length"), self.max_body)
        payload = http_body.parse_json_object(body) if self.json_body else None
        await services.refresh()
        ctx = services.context(principal, fields, started)
        ctx.body, ctx.payload = body, payload
        return ctx, http_body.replay(body, receive)

    async def _refuse(
        self,
        services: Services,
        scope: Scope,
        receive: Receive,
        sent: _Sent,
        fields: dict[str, Any],
        started: float,
        error: GovernedError,
        ctx: RequestContext | None,
    ) -> None:
        """Record the refusal (unless the handler recorded the request) and answer it, if the
        response has not started; a failure after the first byte can only be logged."""
        if sent.started:
            log.error("request %s failed after its response started: %s", fields["request_id"], error)
            return
        if ctx is not None and ctx.recorded:
            response: Response = error_response(
                error.status, error.code, str(error), None, fields["request_id"]
            )
        else:
            response = await services.recorder.reject(fields, started, error, self.action, ctx)
        if error.status == 405:
            response.headers["Allow"] = ", ".join(sorted(self.methods))
        await response(scope, receive, sent)


class _Sent:
    """The client's `send`, adding `X-Request-Id` and noting whether the response has started."""

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.header = (b"x-request-id", request_id.encode())
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
        await self.send(message)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
