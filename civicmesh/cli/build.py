"""`civicmesh build` and `civicmesh demo`."""

from __future__ import annotations

import argparse
import sys

from civicmesh.cli import CommandError
from meshcore.settings import Settings

DEMO_PERSONAS = ("alice", "bob", "dana", "erin", "frank", "carol", "mallory")
EXAMPLE_QUERY = (
    "{ publicWorks { serviceRequests(first: 5, orderBy: [{openedAt: DESC}]) "
    "{ totalCount nodes { requestId category district openedAt requesterName } } } }"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    build = subparsers.add_parser("build", help="ingest, run dbt with its tests, publish passing products")
    build.add_argument("--select", help="Dagster asset selection, e.g. 'group:public_works'")
    build.add_argument(
        "--no-wait",
        action="store_true",
        help="if another build of this home runs, refuse (exit code 75) instead of waiting for it",
    )
    build.set_defaults(handler=run_build_command)

    demo = subparsers.add_parser("demo", help="generate data, build everything, print tokens, serve")
    demo.add_argument("--rows", type=int, default=20_000, help="service requests to generate")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="stop after printing the tokens")
    demo.set_defaults(handler=run_demo)


def _build(settings: Settings, selection: str | None = None, wait: bool = True) -> int:
    from meshcore.products import ProductSpecError
    from orchestration.build import ProjectError, run_build
    from orchestration.buildlock import EXIT_BUILD_LOCKED, BuildLocked

    try:
        report = run_build(settings, selection, wait=wait)
    except ProductSpecError as exc:
        raise CommandError(f"invalid product spec: {exc}") from exc
    except ProjectError as exc:
        raise CommandError(str(exc)) from exc
    except BuildLocked as exc:
        raise CommandError(f"{exc} (--no-wait)", code=EXIT_BUILD_LOCKED) from exc
    # Published / held back (with why) / warned per product; a held-back product keeps its last
    # snapshot current. Non-zero when something was held back or a step failed, never for warnings.
    print("\n".join(report.summary()), file=sys.stderr)
    return 1 if report.failed else 0


def run_build_command(args: argparse.Namespace) -> int:
    return _build(Settings.from_env(), args.select, wait=not args.no_wait)


def run_demo(args: argparse.Namespace) -> int:
    import os

    os.environ["CIVICMESH_DEMO"] = "1"
    settings = Settings.from_env()
    settings.ensure_dirs()
    from civicmesh.synthetic import generate_city

    if not any(settings.landing_dir.glob("*/*.parquet")):
        generate_city(settings.landing_dir, rows=args.rows, seed=42)
    if _build(settings) != 0:
        raise CommandError("the demo build did not succeed; see the report above")
    from gateway.auth import issue_token

    print("\nDemo tokens (valid 12 hours):")
    for user in DEMO_PERSONAS:
        print(f"  {user:8} {issue_token(settings, user, ttl_hours=12)}")
    url = f"http://{args.host}:{args.port}/graphql"
    print(f"\nGraphiQL: {url}  (paste a token into the Authorization header as 'Bearer <token>')")
    print(
        "Example:\n"
        f"  curl -s {url} -H 'Content-Type: application/json' \\\n"
        f'    -H "Authorization: Bearer $(.venv/bin/civicmesh token alice | tail -1)" \\\n'
        f'    -d \'{{"query": "{EXAMPLE_QUERY}"}}\'\n',
        flush=True,
    )
    if args.no_serve:
        return 0
    from civicmesh.cli.serve import serve

    return serve(settings, host=args.host, port=args.port, workers=1)
