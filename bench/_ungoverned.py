"""The gateway with governance off, for bench/gateway.py's baseline: built here from public pieces,
so the library carries no off switch.

`create_app` is the app `civicmesh serve` runs (`civicmesh.asgi.create_app`: the same pipeline,
token check, directory check, response cache, Strawberry execution and snapshot reads), with two
parts of the process's `Gateway` replaced once its lifespan has built it:

- the policy: every decision allows, with no masks and no row scope (the directory, the policy
  version and the engine's status are the real engine's, so authentication is unchanged);
- the recorder: nothing is written to the access log or the lineage outbox, refusals included.

Never serve this: it exists to measure what governance costs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.responses import Response

from civicmesh.asgi import create_app as create_governed_app
from gateway.errors import GovernedError
from gateway.recording import error_response
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from policies.decision import Decision
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

HEADERS = {"x-civicmesh-governance": "off (benchmark)"}


class AllowAll:
    """A policy engine whose every decision allows, unmasked and unscoped; all else is `engine`'s."""

    def __init__(self, engine: PolicyEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def decide(self, subject: str, product: ProductSpec | None, action: str) -> Decision:
        name = product.name if product is not None else ""
        return Decision(True, subject, name, action, "bench", "governance off", self._engine.version)


class RecordNothing:
    """A recorder that writes nothing and lets every response go."""

    def __init__(self, lineage: Any) -> None:
        self.lineage = lineage

    async def finish(self, ctx: Any, response: Response, touches: Any, request_error: Any) -> Response:
        response.headers.update(HEADERS)
        return response

    async def finish_export(self, *args: Any) -> Response | None:
        return None

    async def reject(self, fields: Any, started: Any, error: GovernedError, *args: Any) -> Response:
        return error_response(error.status, error.code, str(error))

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        return True


def create_app(settings: Settings | None = None) -> Starlette:
    app = create_governed_app(settings)
    governed = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with governed(app):
            gateway = app.state.gateway
            gateway.policy = AllowAll(gateway.policy)
            gateway.recorder = RecordNothing(gateway.lineage)
            log.warning(
                "GOVERNANCE IS OFF (benchmark only): no decisions, masks, row scope, access log, lineage"
            )
            yield

    app.router.lifespan_context = lifespan
    return app
