"""Rendering: the Jinja2 environment (autoescaped, strict), the base layout's context, the security
headers every page carries, and `Pages.page`, the wrapper of every signed-in page.

Every HTML response gets a Content-Security-Policy that allows scripts, styles and fetches from
this origin only (no inline script, no eval), `frame-ancestors 'none'`, `nosniff`, `no-store`.
A signed-in page gets a `backend.Reader` (the user's governed reads, one request id, also sent as
`X-Request-Id`); a `backend.PageError` it raises becomes the error page with its status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from meshcore.settings import Settings
from portal import sessions
from portal.assets import Assets
from portal.backend import PageError, Reader, request_id

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("templates")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    413: "Too large",
    503: "Unavailable",
}
FLASH_KEY = "flash"

Handler = Callable[[Request, Reader], Awaitable[Response]]


def base_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def flash(request: Request, message: str) -> None:
    """A notice for the next page this session shows (after a form's redirect)."""
    request.session[FLASH_KEY] = message


class Pages:
    def __init__(self, settings: Settings, assets: Assets) -> None:
        self.settings = settings
        self.assets = assets
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.globals.update(asset_url=assets.url, asset_integrity=assets.integrity)
        env.filters["when"] = _when
        self.templates = Jinja2Templates(env=env, context_processors=[self._context])

    def _context(self, request: Request) -> dict[str, Any]:
        def csrf_field() -> Markup:
            token = escape(sessions.csrf_token(request))
            return Markup(f'<input type="hidden" name="csrf_token" value="{token}">')

        return {
            "user": sessions.signed_in(request),
            "csrf_field": csrf_field,
            "base": base_path(request),
            "demo_mode": self.settings.demo_mode,
            "flash": request.session.pop(FLASH_KEY, None) if "session" in request.scope else None,
            "here": request.url.path,
        }

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        response.headers.update(PAGE_HEADERS)
        return response

    def error(self, request: Request, status: int, message: str, title: str | None = None) -> Response:
        title = title or TITLES.get(status, "Something went wrong")
        return self.render(request, "error.html", status, title=title, message=message)

    def page(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """`handler` as a route endpoint: signed-out users go to the sign-in page first; a PageError
        is the error page with its status; every answer carries the page view's `X-Request-Id`."""

        async def endpoint(request: Request) -> Response:
            user = sessions.signed_in(request)
            if user is None:
                return sign_in_first(request)
            started = time.perf_counter()
            reader = Reader(request, user.principal)
            try:
                response = await handler(request, reader)
            except PageError as exc:
                response = self.error(request, exc.status, str(exc))
            except Exception:  # a bug: logged with its traceback, never shown
                log.exception("portal page %s failed (request %s)", request.url.path, request_id(request))
                message = f"Internal error; it was logged as request {request_id(request)}."
                response = self.error(request, 500, message)
            response.headers["X-Request-Id"] = request_id(request)
            # W3C Server Timing: the governed reads and the whole page (the benchmark reads it)
            total = (time.perf_counter() - started) * 1000
            reads = f'reads;dur={reader.seconds * 1000:.1f};desc="{reader.reads} governed requests"'
            response.headers["Server-Timing"] = f"{reads}, page;dur={total:.1f}"
            return response

        endpoint.__name__ = handler.__name__
        return endpoint


def sign_in_first(request: Request) -> Response:
    """303 to the sign-in page, which comes back here (a same-site path) afterwards; after a form
    post, to the catalog (a form is never re-sent by a redirect)."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    return RedirectResponse(f"{base_path(request)}/login?{urlencode({'next': target})}", status_code=303)


def _when(value: str | None) -> str:
    """An ISO 8601 time from GraphQL as `YYYY-MM-DD HH:MM` (UTC when it says so)."""
    if not value:
        return "—"
    text = str(value).replace("T", " ")
    date_time, utc = text[:16], text.endswith(("Z", "+00:00"))
    return f"{date_time} UTC" if utc else date_time
