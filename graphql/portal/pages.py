"""Rendering: the Jinja2 environment (autoescaped, strict), the base layout's context, the
security headers every page carries, and the placeholder catalog page.

Every HTML response gets a Content-Security-Policy that allows scripts, styles and fetches from
this origin only (no inline script, no eval), `frame-ancestors 'none'`, `nosniff`, `no-store`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from civicmesh.settings import Settings
from portal import sessions
from portal.assets import Assets
from portal.backend import backend

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


def base_path(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


class Pages:
    def __init__(self, settings: Settings, assets: Assets) -> None:
        self.settings = settings
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.globals.update(asset_url=assets.url, asset_integrity=assets.integrity)
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
        }

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        response = self.templates.TemplateResponse(request, template, context, status_code=status)
        response.headers.update(PAGE_HEADERS)
        return response

    def error(self, request: Request, status: int, message: str, title: str | None = None) -> Response:
        titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 413: "Too large"}
        title = title or titles.get(status, "Something went wrong")
        return self.render(request, "error.html", status, title=title, message=message)

    async def catalog(self, request: Request) -> Response:
        """Placeholder: the products the signed-in user may discover (decided by the policy engine).
        To be replaced by the governed in-process GraphQL `products` query."""
        user = sessions.signed_in(request)
        if user is None:
            return sign_in_first(request)
        gateway = backend(request)
        await gateway.refresh()
        subject = user.principal.subject
        specs = sorted((e.spec for e in gateway.state.entries.values()), key=lambda s: s.name)
        products = [s for s in specs if gateway.policy.decide(subject, s, "discover").allowed]
        known = gateway.policy.user(subject) is not None
        return self.render(request, "catalog.html", products=products, known=known)


def sign_in_first(request: Request) -> Response:
    """303 to the sign-in page, which comes back here (a same-site path) afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{base_path(request)}/login?{urlencode({'next': target})}", status_code=303)
