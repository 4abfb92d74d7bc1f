"""The ASGI app `civicmesh serve` runs (uvicorn `--factory civicmesh.asgi:create_app`): the gateway
with the staff portal mounted at `/`.

The composition lives here, in the application layer, because the portal reads through the
gateway (portal imports gateway); the gateway knows only that some routes are mounted after its own
and that a session cookie may sign a GET request in.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount, Router

from gateway.app import Deferred
from gateway.app import create_app as create_gateway_app
from meshcore.settings import Settings
from portal.sessions import cookie_reader


def create_app(settings: Settings | None = None) -> Starlette:
    """The gateway (`/graphql`, `/exports`, `/api/v1/lineage`, `/healthz`, `/readyz`) and the portal."""
    settings = settings or Settings.from_env()

    def portal() -> Router:  # Jinja2, Authlib and rdflib load on the first page, not at start-up
        from portal.app import create_portal_routes

        return Router(routes=create_portal_routes(settings))

    return create_gateway_app(
        settings,
        routes=[Mount("", app=Deferred(portal))],
        session_reader=cookie_reader(settings.portal_session_key),
    )
