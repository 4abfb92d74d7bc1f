"""CSRF protection for every portal form: a synchronizer token (OWASP CSRF Prevention Cheat Sheet).

Each session holds a random token (`sessions.csrf_token`); every form carries it in a hidden
`csrf_token` field (the templates' `csrf_field()`), a script may send it as `X-CSRF-Token`. A POST,
PUT, PATCH or DELETE without this session's token is refused with 403 and a message before any
endpoint runs, and logged. Tokens are compared in constant time and replaced at sign-in. Forms are
`application/x-www-form-urlencoded` (at most 64 KiB, arriving within `http_body.BODY_TIMEOUT_S`:
else 413 or 408); other bodies must use the header.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from urllib.parse import parse_qs

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http_body import BODY_TIMEOUT_S

log = logging.getLogger(__name__)

FIELD = "csrf_token"
HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM_BYTES = 64 * 1024

Refuse = Callable[[Request, int, str], Response]


class CSRFMiddleware:
    """Refuses unsafe requests whose token does not match the session's (inside Sessions)."""

    def __init__(self, app: ASGIApp, refuse: Refuse) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        with anyio.move_on_after(BODY_TIMEOUT_S) as deadline:
            body, complete = await _read_body(receive, MAX_FORM_BYTES)
        if deadline.cancelled_caught:  # a client trickling its form held the connection for ever
            message = f"The form did not arrive within {BODY_TIMEOUT_S:g} s."
            await self.refuse(request, 408, message)(scope, receive, send)
            return
        if not complete:
            await self.refuse(request, 413, "The form is too large.")(scope, receive, send)
            return
        problem = _check(scope, body)
        if problem is not None:
            log.warning(
                "csrf refused: %s %s from %s: %s",
                scope["method"],
                scope["path"],
                request.client.host if request.client else "-",
                problem,
            )
            message = "This form has expired or did not come from this portal. Reload the page and try again."
            await self.refuse(request, 403, message)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _check(scope: Scope, body: bytes) -> str | None:
    """None when the request carries this session's token, else why not (for the log)."""
    expected = scope.get("session", {}).get("csrf")
    if not isinstance(expected, str) or not expected:
        return "no session token"
    sent = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
    if not sent and _content_type(scope) == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get(FIELD, [])
        sent = values[0] if len(values) == 1 else ""
    if not sent:
        return "no token sent"
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        return "token mismatch"
    return None


def _content_type(scope: Scope) -> str:
    raw = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    return raw.split(";", 1)[0].strip().lower()


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, or (partial, False) once it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the app the body already read, then the client's own messages."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
