"""The Starlette app: `/graphql`, `/exports/{product}.{fmt}` and `/api/v1/lineage` (authenticated,
governed, logged: each behind the one request pipeline, `pipeline.py`), `/healthz` (liveness) and
`/readyz` (readiness: see readiness.py).

Order of a request: the pipeline (request id, body limits, authentication) -> execution (decisions,
masks, row scope in resolvers) -> access-log commit -> response. If the log cannot be committed
the response is replaced by HTTP 503 `UNAVAILABLE` with no data (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import errors, ide, inprocess
from gateway.auth import Principal, TokenCache
from gateway.context import CatalogState, RequestContext, Touch
from gateway.duck import DuckPool
from gateway.errors import GovernedError
from gateway.ingest import handle_lineage_post
from gateway.integrity import snapshots_check
from gateway.lineage_fields import GraphCache
from gateway.pipeline import Page, RequestPipeline, SessionReader, request_context
from gateway.readiness import CheckResult, Readiness
from gateway.recording import Recorder, operation_hash
from gateway.responses import ResponseCache
from gateway.schema import build_schema
from gateway.view import CONTEXT_KEY, GatewayView
from lineage.receiver import MAX_EVENT_BYTES
from lineage.recorder import LineageRecorder
from meshcore import store
from meshcore.accesslog import AccessLog
from meshcore.audit.sealing import Sealer, open_log
from meshcore.catalog import Catalog
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.engine import PolicyEngine

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
POLL_SECONDS = 1.0


class Gateway:
    """Everything a request needs, built once per process in the lifespan."""

    def __init__(self, settings: Settings, access_log: AccessLog | None = None) -> None:
        self.settings = settings
        engine = get_engine(settings.metadata_url)
        self.catalog = Catalog(engine, settings.home).ensure_schema()
        self.access_log = access_log or open_log(settings)
        self.policy = PolicyEngine.load(settings, audit_log=self.access_log, serving=True)
        self.lineage = LineageRecorder.from_settings(settings)
        self.duck = DuckPool(
            settings.snapshots_dir,
            settings.mask_key,
            threads=settings.duckdb_threads,
            timeout_seconds=settings.query_timeout_s,
            hot_budget_bytes=settings.snapshot_memory_budget_bytes,
            copies_dir=settings.snapshot_copies_dir,
        )
        self.responses = ResponseCache()
        self.tokens = TokenCache()
        self.recorder = Recorder(self.access_log, self.lineage)
        self.lineage_graph = GraphCache(self.lineage.outbox)
        # The portal's session cookie, for GET routes without a bearer token (pipeline.authenticate).
        self.session_reader: SessionReader | None = None
        self.state = self._load_state()
        self.view = GatewayView(build_schema(self.state, settings.demo_mode), settings.demo_mode)
        self._polled = time.monotonic()
        self._refreshing = asyncio.Lock()
        self._policy_task: asyncio.Task[None] | None = None
        # Each fault that makes this process unfit to serve registers a check here (see readiness.py).
        self.readiness = Readiness()
        self.readiness.add("snapshots", lambda: snapshots_check(self.catalog, self.duck.checks))
        self.readiness.add("snapshot_memory", lambda: CheckResult(True, self.duck.memory_report()))
        self.sealer = Sealer.from_settings(settings, self.access_log) if self.access_log.signer else None
        self.readiness.add("policy", lambda: CheckResult(*self.policy.status()))
        if self.sealer is not None:
            sealer = self.sealer
            self.readiness.add("audit", lambda: CheckResult(*sealer.status()))
        self.readiness.add("store", lambda: CheckResult(*store.probe(engine)))

    def _load_state(self) -> CatalogState:
        version = self.catalog.version()
        return CatalogState(version=version, entries={e.spec.name: e for e in self.catalog.entries()})

    async def refresh(self) -> None:
        """At most once a second: pick up a new publish (new schema) and policy changes."""
        if time.monotonic() - self._polled < POLL_SECONDS or self._refreshing.locked():
            return
        async with self._refreshing:
            self._polled = time.monotonic()
            self._refresh_policy_in_background()
            try:
                version = await anyio.to_thread.run_sync(self.catalog.version)
                if version != self.state.version:
                    state = await anyio.to_thread.run_sync(self._load_state)
                    schema = await anyio.to_thread.run_sync(build_schema, state, self.settings.demo_mode)
                    # Swap both together: a request sees the old pair or the new pair.
                    self.state, self.view = state, GatewayView(schema, self.settings.demo_mode)
                    settle_heap()
                    log.info("catalog %s: schema rebuilt with %d products", version, len(state.entries))
            except Exception:  # keep serving the last good schema
                log.exception("catalog refresh failed")

    def _refresh_policy_in_background(self) -> None:
        """Re-read policy files and active grants in a worker thread, not awaited by any request.
        Kept fresher than the engine's own check interval, so `decide()` never does that I/O
        inline on the event loop (it still refreshes inline when a grant has just expired)."""
        if self._policy_task is not None and not self._policy_task.done():
            return

        async def run() -> None:
            try:
                await anyio.to_thread.run_sync(self.policy.refresh_if_changed)
            except Exception:  # the engine keeps its last good state; decide() retries inline
                log.exception("policy refresh failed")

        self._policy_task = asyncio.get_running_loop().create_task(run())

    def start(self) -> Gateway:
        self.lineage.start()  # background delivery from the outbox; recording stays on the request
        if self.sealer is not None:
            self.sealer.start()  # access-log checkpoints at a count, an interval and shutdown
        return self

    def close(self) -> None:
        self.lineage.stop()
        if self.sealer is not None:
            self.sealer.close()
        self.duck.close()

    # -- one request -----------------------------------------------------------------------------

    def context(self, principal: Principal, fields: dict[str, Any], started: float) -> RequestContext:
        """The context of one authenticated request (the pipeline builds it; see pipeline.py)."""
        return RequestContext(
            settings=self.settings,
            principal=principal,
            policy=self.policy,
            duck=self.duck,
            catalog=self.catalog,
            access_log=self.access_log,
            lineage_graph=self.lineage_graph,
            state=self.state,
            schema=self.view.schema,
            request_id=fields["request_id"],
            client=fields.get("client"),
            started=started,
            recorder=self.recorder,
            log_fields=fields,
        )

    # One GraphQL document run in-process as a principal, governed and recorded exactly like
    # `POST /graphql`: the staff portal reads only this way (inprocess.py states the guarantees).
    execute = inprocess.execute

    async def graphiql_page(self, request: Request) -> Response | None:
        """The GraphiQL page (demo mode, a browser's GET): no data, no token needed."""
        if request.method == "GET" and self.settings.demo_mode and _wants_html(request):
            return await self.view.run(request)
        return None

    async def handle(self, request: Request) -> Response:
        """`/graphql` behind the pipeline: the response cache, then Strawberry, then the record."""
        ctx = request_context(request)
        view = self.view
        if view.schema is not ctx.schema:  # a publish swapped the schema since the context was built
            view = GatewayView(ctx.schema, self.settings.demo_mode)
        ctx.log_fields["operation_hash"] = _operation_hash(ctx.payload)
        key = ResponseCache.key(
            ctx.state.version,
            self.policy.version,
            ctx.subject,
            request.headers.get("content-type", ""),
            ctx.body,
        )
        hit = self.responses.get(key)
        if hit is not None and not self._still_decided(ctx.subject, hit.touches):
            hit = None
        if hit is not None:
            response = Response(hit.body, media_type="application/json")
            return await self.recorder.finish(ctx, response, list(hit.touches), None)
        setattr(request.state, CONTEXT_KEY, ctx)
        try:
            response = await view.answer_plain(request, ctx) or await view.run(request, context=ctx)  # type: ignore[call-overload]  # Strawberry's view.run stub omits `context`
        except HTTPException as exc:  # malformed HTTP-level request (content type, JSON, method)
            raise GovernedError(exc.reason, errors.BAD_USER_INPUT, status=exc.status_code) from None
        request_error = ctx.error_codes[0] if ctx.error_codes else None
        if ctx.cacheable and ctx.touches and response.status_code == 200 and request_error is None:
            self.responses.put(key, bytes(response.body), ctx.touches)
        return await self.recorder.finish(ctx, response, ctx.touches, request_error)

    def _still_decided(self, subject: str, touches: tuple[Touch, ...]) -> bool:
        """A cached response stands only if every decision behind it is still the same (a grant
        may have expired): decide() is cached, so this costs microseconds."""
        return all(
            self.policy.decide(subject, t.spec, t.action) == t.decision for t in touches if t.spec is not None
        )


class Deferred:
    """An ASGI app built on its first request, in a worker thread, so what `/graphql` never uses (the
    staff portal: Jinja2, Authlib, rdflib) is not imported at start-up: a worker answers sooner."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()

    @property
    def routes(self) -> list[Any]:
        """The built app's routes (for `url_for`), once a request has built it."""
        return list(getattr(self._app, "routes", []))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            async with self._lock:
                if self._app is None:
                    self._app = await anyio.to_thread.run_sync(self._build)
        await self._app(scope, receive, send)


def settle_heap(collect: bool = True) -> None:
    """Move the long-lived objects (schema, policy, catalog) out of the cyclic collector's reach,
    and leave the collector on.

    Each request allocates many short-lived objects; every few hundred allocations Python runs a
    collection, and the periodic full ones walked the whole schema (tens of thousands of objects):
    a few ms each, on the event loop. After `gc.freeze()` those objects are no longer scanned.
    Called after each schema rebuild (the old schema is released first: `collect`) and at start-up
    with `collect=False`: a full collection then walks every object of the loaded code (~110k,
    ~70 ms before the first answer) to find the start-up's own cyclic garbage, a few hundred KB
    whatever the catalog's size (argparse's formatters, temporary classes: ~2k objects with one
    product or ten, measured 2026-11-30), which is frozen with the rest.
    `civicmesh serve` keeps the collector off while it starts (civicmesh/cli/serve.py).
    """
    gc.unfreeze()
    if collect:
        gc.collect()
    gc.freeze()
    gc.enable()


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _operation_hash(payload: Any) -> str | None:
    """SHA-256 of the query text (never its variables, which may hold personal data)."""
    query = payload.get("query") if isinstance(payload, dict) else None
    return operation_hash(query) if isinstance(query, str) else None


def governed(
    endpoint: Callable[[Request], Awaitable[Response]],
    action: str,
    methods: tuple[str, ...],
    max_body: int = 0,
    json_body: bool = False,
    page: Page | None = None,
) -> RequestPipeline:
    """`endpoint` behind the request pipeline (an ASGI app, so the route itself checks no method:
    the pipeline refuses others with 405 and a record)."""
    return RequestPipeline(
        request_response(endpoint),
        action=action,
        methods=methods,
        max_body=max_body,
        json_body=json_body,
        page=page,
    )


def create_app(
    settings: Settings | None = None,
    *,
    routes: Sequence[BaseRoute] = (),
    session_reader: SessionReader | None = None,
) -> Starlette:
    """The gateway's app: everything heavy is built in the lifespan. `routes` are mounted last and
    `session_reader` signs GET requests in from a cookie: the application layer mounts the staff
    portal this way (`civicmesh.asgi.create_app`, the factory `civicmesh serve` runs)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.ensure_dirs()
        gateway = (await anyio.to_thread.run_sync(Gateway, settings)).start()
        gateway.session_reader = session_reader
        app.state.gateway = gateway
        settle_heap(collect=False)
        try:
            yield
        finally:
            gateway.close()

    async def graphql(request: Request) -> Response:
        return await request.app.state.gateway.handle(request)

    async def graphiql_page(request: Request) -> Response | None:
        return await request.app.state.gateway.graphiql_page(request)

    async def export(request: Request) -> Response:
        from gateway.exports import handle_export  # Arrow is imported on the first export

        return await handle_export(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready, checks = await anyio.to_thread.run_sync(request.app.state.gateway.readiness.report)
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route(
                "/graphql",
                governed(graphql, "query", ("POST",), MAX_BODY_BYTES, json_body=True, page=graphiql_page),
            ),
            Route("/exports/{target}", governed(export, "export", ("GET",))),
            Route(
                "/api/v1/lineage",
                governed(handle_lineage_post, "lineage_ingest", ("POST",), MAX_EVENT_BYTES, json_body=True),
            ),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *([Mount(ide.STATIC_PATH, app=ide.static_app())] if settings.demo_mode else []),
            *routes,  # last: the staff portal at / (civicmesh/asgi.py)
        ],
        lifespan=lifespan,
    )
