"""`civicmesh access request|approve|reject|revoke|list`: access requests and runtime grants.

`--as USER` names the acting user. Here that is taken on trust, as for any local admin tool run by
someone with access to the metadata store; a deployed service must take the identity from a verified
token instead (the gateway's GraphQL mutations do).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from civicmesh.cli import CommandError
from meshcore.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    access = subparsers.add_parser("access", help="request, approve, revoke and list access grants")
    sub = access.add_subparsers(dest="access_command", required=True, metavar="SUBCOMMAND")

    def as_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="user", required=True, help="the acting user")

    request = sub.add_parser("request", help="ask for an action on a product, for a purpose and a time")
    request.add_argument("product")
    as_arg(request)
    request.add_argument("--action", default="read")
    request.add_argument("--purpose", required=True)
    request.add_argument("--days", type=int, default=30)
    request.add_argument("--manifest", type=Path, help="products from a dbt manifest, not the catalog")
    request.set_defaults(handler=run_request)

    for name, verb in (("approve", "approve"), ("reject", "reject"), ("revoke", "revoke")):
        p = sub.add_parser(name, help=f"{verb} access request ID")
        p.add_argument("id", type=int)
        as_arg(p)
        p.add_argument("--note", default="")
        p.set_defaults(handler=run_decide, verb=verb)

    listing = sub.add_parser("list", help="requests you made, and those you may decide")
    as_arg(listing)
    listing.add_argument("--product")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=run_list)


def _store(settings: Settings, writing: bool = True) -> Any:
    """The grant store; `writing`: with the signed access log its changes are chained into."""
    from meshcore.audit.sealing import open_log
    from meshcore.store import get_engine
    from policies.engine import PolicyEngine
    from policies.grants import AccessRequests
    from policies.names import PolicyError

    log = open_log(settings) if writing else None
    try:
        engine = PolicyEngine.load(settings, check_interval=None, audit_log=log)
    except (PolicyError, OSError) as exc:
        raise CommandError(f"the policy does not load: {exc}") from exc
    return AccessRequests(engine, get_engine(settings.metadata_url), access_log=log)


def _show(r: Any) -> str:
    until = f" until {r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else ""
    decided = f" by {r.decided_by}" if r.decided_by else ""
    return (
        f"#{r.id:<4} {r.state():<8} {r.subject:<10} {r.action:<9} {r.product}  "
        f"{r.days}d{decided}{until}  purpose: {r.purpose}"
    )


def run_request(args: argparse.Namespace) -> int:
    from civicmesh.cli.policy import find_product, load_products
    from policies.names import PolicyError

    settings = Settings.from_env()
    product = find_product(load_products(settings, args.manifest), args.product)
    store = _store(settings)
    try:
        request = store.request(args.user, product, args.action, args.purpose, args.days)
    except PolicyError as exc:
        raise CommandError(str(exc)) from exc
    print(_show(request))
    return 0


def run_decide(args: argparse.Namespace) -> int:
    from policies.names import PolicyError

    store = _store(Settings.from_env())
    action = getattr(store, args.verb)
    try:
        request = action(args.id, args.user, args.note)
    except PolicyError as exc:
        raise CommandError(str(exc)) from exc
    print(_show(request))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from policies.names import GLOBAL_DOMAIN

    store = _store(Settings.from_env(), writing=False)
    policy = store.policy
    if policy.user(args.user) is None:
        raise CommandError(f"unknown user {args.user!r}")
    roles = policy.roles(args.user)
    owning = {n for n, r in policy.directory.roles.items() if r.owns}
    departments = {d for r, d in roles if r in owning}
    sees_all = any(d == GLOBAL_DOMAIN for _, d in roles)  # auditors review every request
    rows = [
        r
        for r in store.list(product=args.product)
        if sees_all or r.subject == args.user or r.department in departments
    ]
    for r in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "id": r.id,
                        "state": r.state(),
                        "subject": r.subject,
                        "product": r.product,
                        "action": r.action,
                        "purpose": r.purpose,
                        "days": r.days,
                        "decided_by": r.decided_by,
                        "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                    }
                )
            )
        else:
            print(_show(r))
    if not rows and not args.json:
        print("no access requests")
    return 0
