"""The portal's routes, for the gateway app to mount: `create_portal_routes(settings)`.

| route | what |
|---|---|
| `GET /` | the catalog: search and facets (catalog.py) |
| `GET /products/<department.product>[/<tab>]` | product page, one URL per tab (product.py, data_tabs.py) |
| `POST /products/<department.product>/access` | request access (the `requestAccess` mutation) |
| `GET /inbox`; `POST /inbox/<id>/approve|reject|revoke` | the owners' inbox (inbox.py) |
| `GET /audit`, `GET /audit/verify` | access-log search, readers of derived data, verification (audit.py) |
| `GET /login`, `/login/oidc`, `/auth/callback`; `POST /login/demo`, `/logout` | sign-in (auth.py) |
| `GET /catalog.ttl`, `GET /catalog.jsonld`, `GET /catalog/dcat` | DCAT-AP feed (dcat.py) |
| `GET /static/...` | pinned front-end files, the CSS and script, the district boundaries (assets.py) |

Pages read only through the gateway's governed operations, in-process, as the signed-in user
(`backend.Reader`). Everything but /static runs inside the session (sessions.py) and CSRF (csrf.py)
middleware. The routes are the last in the gateway's table: `/graphql`, `/exports`, ... match first.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, request_response

from gateway import errors
from gateway.errors import GovernedError
from gateway.pipeline import RequestPipeline, request_context
from gateway.recording import error_response
from meshcore.settings import Settings
from portal import dcat, sessions
from portal.assets import STATIC_PATH, Assets
from portal.audit import AuditPages
from portal.auth import SignIn
from portal.backend import backend
from portal.catalog import CatalogPage
from portal.csrf import CSRFMiddleware
from portal.data_tabs import DataTabs
from portal.inbox import InboxPages
from portal.pages import Pages
from portal.product import ProductPages

log = logging.getLogger(__name__)


def create_portal_routes(settings: Settings) -> list[BaseRoute]:
    assets = Assets()
    pages = Pages(settings, assets)
    sign_in = SignIn(settings, pages)
    feed = CatalogFeed(settings)
    catalog = CatalogPage(pages)
    product = ProductPages(pages, DataTabs(pages, assets).tabs())
    routes = [
        Route("/", pages.page(catalog.show), methods=["GET"], name="portal_catalog"),
        *product.routes(),
        *InboxPages(pages).routes(),
        *AuditPages(pages).routes(),
        *sign_in.routes(),
        Route("/catalog.ttl", feed.governed(feed.turtle)),
        Route("/catalog.jsonld", feed.governed(feed.json_ld)),
        Route("/catalog/dcat", feed.governed(feed.negotiated)),
    ]
    middleware = [
        Middleware(sessions.Sessions, secret_key=settings.portal_session_key),
        Middleware(CSRFMiddleware, refuse=pages.error),
    ]
    return [Mount(STATIC_PATH, app=assets.app()), Mount("", routes=routes, middleware=middleware)]


class CatalogFeed:
    """The DCAT-AP feed over HTTP, behind the gateway's request pipeline (a bearer token, or the
    portal session; the subject in the directory; refusals recorded), read in-process as the caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def governed(endpoint: object) -> RequestPipeline:
        return RequestPipeline(request_response(endpoint), action="catalog_feed", methods=("GET",))  # type: ignore[arg-type]

    async def turtle(self, request: Request) -> Response:
        return await self._respond(request, dcat.TURTLE)

    async def json_ld(self, request: Request) -> Response:
        return await self._respond(request, dcat.JSON_LD)

    async def negotiated(self, request: Request) -> Response:
        media_type = dcat.negotiate(request.headers.get("accept", ""))
        if media_type is None:
            accept = request.headers.get("accept", "")[:200]
            message = f"Nothing acceptable in Accept {accept!r}: ask for {dcat.TURTLE} or {dcat.JSON_LD}."
            raise GovernedError(message, errors.BAD_USER_INPUT, status=406)  # recorded by the pipeline
        return await self._respond(request, media_type)

    async def _respond(self, request: Request, media_type: str) -> Response:
        ctx = request_context(request)
        try:
            body = await backend(request).execute(
                ctx.principal, dcat.PRODUCTS, request_id=ctx.request_id, client=ctx.client
            )
        except GovernedError as exc:  # recorded by the in-process execution already
            return error_response(exc.status, exc.code, str(exc))
        if body.get("data") is None:
            message = "; ".join(str(e.get("message")) for e in body.get("errors") or ())
            return error_response(400, errors.BAD_USER_INPUT, message)
        entries = dcat.public_entries(body["data"]["products"])
        base = str(request.base_url).rstrip("/")
        graph = dcat.catalog_graph(entries, base, self.settings.organisation_name)
        data = await anyio.to_thread.run_sync(dcat.serialize, graph, media_type)
        headers = {"Vary": "Accept, Authorization, Cookie", "Cache-Control": "private, no-cache"}
        return Response(data, media_type=media_type, headers=headers)
