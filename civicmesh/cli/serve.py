"""`civicmesh serve`, `civicmesh token USER` and `civicmesh query --as USER 'GRAPHQL'`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import Any

from civicmesh.cli import CommandError
from meshcore.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    serve_p = subparsers.add_parser("serve", help="serve the GraphQL gateway (uvicorn)")
    serve_p.add_argument("--host", default="127.0.0.1")
    serve_p.add_argument("--port", type=int, default=8000)
    serve_p.add_argument("--workers", type=int, default=1, help="worker processes")
    serve_p.set_defaults(handler=run_serve)

    token_p = subparsers.add_parser("token", help="issue a bearer token for a user in the directory")
    token_p.add_argument("user")
    token_p.add_argument("--ttl-hours", type=float, default=12.0)
    token_p.set_defaults(handler=run_token)

    query_p = subparsers.add_parser("query", help="run one GraphQL query as a user, in-process")
    query_p.add_argument("--as", dest="user", required=True, help="the user to query as")
    query_p.add_argument("query", help="the GraphQL document")
    query_p.add_argument("--variables", help="variables as a JSON object")
    query_p.set_defaults(handler=run_query)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> int:
    import faulthandler
    import gc
    import os

    if workers == 1:
        # Starting the app (its imports, schema, policy) allocates long-lived objects almost only:
        # the cyclic collector stays off until the lifespan freezes them and turns it back on
        # (gateway.app.settle_heap). With workers, the app starts in each worker process instead.
        gc.disable()
    import uvicorn

    # A fatal signal (e.g. SIGBUS from a memory-mapped file turned unwritable) is reported on stderr
    # with the Python stack, in this process and in its workers, instead of a silent death.
    faulthandler.enable()
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    from gateway.serving import uvicorn_options
    from meshcore.seals.signing import AuditKeyError, open_signer

    # Worker processes re-read settings from the environment: pass the home and mode along.
    os.environ["CIVICMESH_HOME"] = str(settings.home)
    os.environ["CIVICMESH_METADATA_URL"] = settings.metadata_url
    if settings.demo_mode:
        os.environ["CIVICMESH_DEMO"] = "1"
    # Each worker its share of the CPUs for DuckDB, unless set: N workers of every core each would
    # run N times more query threads than there are cores.
    try:
        os.environ["CIVICMESH_DUCKDB_THREADS"] = str(settings.duckdb_threads_for(workers))
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    settings.jwt_secret  # noqa: B018 - create the stored secret once, before workers race for it
    settings.mask_key  # noqa: B018
    try:  # the access log's signing key, before workers race for it
        open_signer(settings.audit_signing_key_file, settings.audit_public_key_file)
    except AuditKeyError as exc:
        raise CommandError(str(exc)) from exc
    uvicorn.run(
        "civicmesh.asgi:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        log_level="info",
        access_log=False,  # every request is already in the hash-chained access log
        **uvicorn_options(),  # header-read, keep-alive and head-size limits (gateway/serving.py)
    )
    return 0


def run_serve(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise CommandError("--workers must be at least 1")
    return serve(Settings.from_env(), args.host, args.port, args.workers)


def _check_user(settings: Settings, user: str) -> None:
    from policies.engine import PolicyEngine

    engine = PolicyEngine.from_dir(settings.policies_dir)
    if engine.user(user) is None:
        known = ", ".join(sorted(u.name for u in engine.users()))
        raise CommandError(f"unknown user {user!r} (the directory has: {known})")


def run_token(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token

    if args.ttl_hours <= 0:
        raise CommandError("--ttl-hours must be positive")
    settings = Settings.from_env()
    _check_user(settings, args.user)
    print(f"# bearer token for {args.user}, valid {args.ttl_hours:g} h", file=sys.stderr)
    print(issue_token(settings, args.user, args.ttl_hours))
    return 0


async def _query_in_process(settings: Settings, token: str, payload: dict[str, Any]) -> tuple[int, Any]:
    import httpx

    from civicmesh.asgi import create_app

    # One query, then the process ends: no local snapshot copy (its build would be work for
    # nothing, and a build DuckDB is still running as the interpreter exits can abort it).
    app = create_app(dataclasses.replace(settings, extra={**settings.extra, "snapshot_memory_mb": "0"}))
    # The real app through ASGI: same auth, governance and access log as over the network.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://civicmesh.local") as client:
            response = await client.post(
                "/graphql", json=payload, headers={"Authorization": f"Bearer {token}"}
            )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"errors": [{"message": response.text}]}


def run_query(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token

    variables = None
    if args.variables:
        try:
            variables = json.loads(args.variables)
        except ValueError as exc:
            raise CommandError(f"--variables is not JSON: {exc}") from exc
        if not isinstance(variables, dict):
            raise CommandError("--variables must be a JSON object")
    settings = Settings.from_env()
    _check_user(settings, args.user)
    token = issue_token(settings, args.user, ttl_hours=0.25)
    status, body = asyncio.run(
        _query_in_process(settings, token, {"query": args.query, "variables": variables})
    )
    print(json.dumps(body, indent=2, default=str))
    return 0 if status == 200 and not body.get("errors") else 1
