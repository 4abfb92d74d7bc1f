"""The portal's routes, for the gateway app to mount: `create_portal_routes(settings)`.

| route | what |
|---|---|
| `GET /` | the catalog (placeholder: products the signed-in user may discover) |
| `GET /login`, `/login/oidc`, `/auth/callback`; `POST /login/demo`, `/logout` | sign-in (auth.py) |
| `GET /catalog.ttl`, `GET /catalog.jsonld`, `GET /catalog/dcat` | DCAT-AP feed (dcat.py) |
| `GET /static/...` | pinned front-end files, the CSS, the district boundaries (assets.py) |

Everything but /static runs inside the session (sessions.py) and CSRF (csrf.py) middleware.
The routes are the last in the gateway's table: `/graphql`, `/exports`, ... match first.
"""

from __future__ import annotations

import logging

import anyio.to_thread
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from civicmesh.settings import Settings
from portal import dcat, sessions
from portal.assets import STATIC_PATH, Assets
from portal.auth import SignIn
from portal.backend import backend, bearer_principal
from portal.csrf import CSRFMiddleware
from portal.pages import Pages

log = logging.getLogger(__name__)


def create_portal_routes(settings: Settings) -> list[BaseRoute]:
    assets = Assets()
    pages = Pages(settings, assets)
    sign_in = SignIn(settings, pages)
    feed = CatalogFeed(settings)
    routes = [
        Route("/", pages.catalog, methods=["GET"], name="portal_catalog"),
        *sign_in.routes(),
        Route("/catalog.ttl", feed.turtle, methods=["GET"]),
        Route("/catalog.jsonld", feed.json_ld, methods=["GET"]),
        Route("/catalog/dcat", feed.negotiated, methods=["GET"]),
    ]
    middleware = [
        Middleware(sessions.Sessions, secret_key=settings.portal_session_key),
        Middleware(CSRFMiddleware, refuse=pages.error),
    ]
    return [Mount(STATIC_PATH, app=assets.app()), Mount("", routes=routes, middleware=middleware)]


class CatalogFeed:
    """The DCAT-AP feed over HTTP: who may read it, in which syntax."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def turtle(self, request: Request) -> Response:
        return await self._respond(request, dcat.TURTLE)

    async def json_ld(self, request: Request) -> Response:
        return await self._respond(request, dcat.JSON_LD)

    async def negotiated(self, request: Request) -> Response:
        media_type = dcat.negotiate(request.headers.get("accept", ""))
        if media_type is None:
            log.warning("dcat feed: nothing acceptable in Accept %r", request.headers.get("accept", "")[:200])
            message = f"Ask for {dcat.TURTLE} or {dcat.JSON_LD}."
            return JSONResponse({"code": "NOT_ACCEPTABLE", "message": message}, status_code=406)
        return await self._respond(request, media_type)

    async def _respond(self, request: Request, media_type: str) -> Response:
        user = sessions.signed_in(request)
        principal = user.principal if user else bearer_principal(request)
        if principal is None:
            log.warning("dcat feed refused: no session and no valid bearer token")
            message = "Sign in, or send Authorization: Bearer <token>."
            body = {"code": "UNAUTHENTICATED", "message": message}
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        gateway = backend(request)
        await gateway.refresh()
        entries = dcat.public_entries(gateway.state.entries.values(), gateway.policy, principal.subject)
        base = str(request.base_url).rstrip("/")
        graph = dcat.catalog_graph(entries, base, self.settings.organisation_name)
        body = await anyio.to_thread.run_sync(dcat.serialize, graph, media_type)
        headers = {"Vary": "Accept, Authorization, Cookie", "Cache-Control": "private, no-cache"}
        return Response(body, media_type=media_type, headers=headers)
