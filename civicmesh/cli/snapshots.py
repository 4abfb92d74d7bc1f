"""`civicmesh snapshots list|withdraw|verify|gc`: the published versions of a product, taking one
out of service, checking files against their published checksums, and retention.

`withdraw --as USER` names the acting user, taken on trust as for `civicmesh access` (a local admin
tool run by someone with access to the metadata store); the policy engine decides whether that user
may (the `grant` right on the product: its department's owners), and the refusal is logged too.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from civicmesh.cli import CommandError
from meshcore.catalog import PUBLISHED, Catalog, WithdrawError, WithdrawRefused, WithdrawResult
from meshcore.retention import collect_garbage
from meshcore.settings import Settings
from meshcore.snapshots import integrity_problem
from meshcore.store import get_engine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshots", help="list a product's snapshots; remove expired ones")
    commands = parser.add_subparsers(dest="snapshots_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="every snapshot of PRODUCT, newest first")
    listing.add_argument("product")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_snapshots)
    withdraw = commands.add_parser(
        "withdraw", help="take a snapshot out of service for good (owners only); current moves back"
    )
    withdraw.add_argument("product")
    withdraw.add_argument("--snapshot", help="the snapshot id (default: the current snapshot)")
    withdraw.add_argument("--reason", required=True, help="why: shown in the catalog")
    withdraw.add_argument("--as", dest="user", required=True, help="the acting user (an owner)")
    withdraw.set_defaults(handler=run_withdraw)
    verify = commands.add_parser(
        "verify", help="check every servable snapshot's file against its published checksum"
    )
    verify.add_argument("product", nargs="?", help="one product (default: every product)")
    verify.set_defaults(handler=run_verify)
    gc = commands.add_parser("gc", help="remove snapshots past retention (never current or young ones)")
    gc.add_argument("--grace-days", type=float, default=7.0, help="never remove younger snapshots")
    gc.add_argument("--keep", type=int, default=3, help="always keep this many newest per product")
    gc.set_defaults(handler=run_gc)


def _catalog(settings: Settings) -> Catalog:
    return Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema()


def list_snapshots(args: argparse.Namespace) -> int:
    catalog = _catalog(Settings.from_env())
    entry = catalog.entry(args.product)
    if entry is None:
        raise CommandError(f"no product named {args.product!r} has been published")
    rows = [
        {
            "id": s.id,
            "current": entry.current is not None and s.id == entry.current.id,
            "published_at": s.published_at.isoformat(),
            "rows": s.row_count,
            "bytes": s.byte_size,
            "checksum": s.checksum,
            "columns": [name for name, _ in s.schema],
            "status": s.status,
            "status_reason": s.status_reason,
            "status_by": s.status_actor,
            "status_at": s.status_at.isoformat() if s.status_at else None,
            "broken": s.broken,
            "quality": _checks_passed(s.quality),
        }
        for s in catalog.snapshots(args.product)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{args.product}: quality {entry.quality_status}")
    for row in rows:
        marker = "*" if row["current"] else " "
        print(f"{marker} {row['id']}  {row['rows']:>10,} rows  {row['bytes']:>12,} B  {row['published_at']}")
        if row["status"] != PUBLISHED:
            print(f"    {row['status']} by {row['status_by']} at {row['status_at']}: {row['status_reason']}")
        if row["broken"]:
            print(f"    BROKEN (not served): {row['broken']}")
    return 0


def run_withdraw(args: argparse.Namespace) -> int:
    result = take_out_of_service(args.product, args.snapshot, args.reason, args.user, "withdrawn")
    now = result.current.id if result.current else "none (nothing is served)"
    print(f"{result.snapshot.id} withdrawn (access-log record {result.access_log_seq})")
    print(f"current: {now}" + ("" if result.moved else " (unchanged)"))
    return 0


def take_out_of_service(
    product: str, snapshot: str | None, reason: str, user: str, kind: str
) -> WithdrawResult:
    """`Catalog.withdraw` as `user`, decided by the policy (`grant` on the product: its owners)
    and chained in the access log; CommandError on refusal or a bad request."""
    from meshcore.accesslog import AccessLog
    from policies.engine import PolicyEngine
    from policies.names import PolicyError

    settings = Settings.from_env()
    catalog = _catalog(settings)
    entry = catalog.entry(product)
    if entry is None:
        raise CommandError(f"no product named {product!r} has been published")
    access_log = AccessLog.from_settings(settings)
    try:  # with the log: no owner the last loaded policy had is lost (as a gateway would refuse)
        policy = PolicyEngine.load(settings, check_interval=None, audit_log=access_log)
    except (PolicyError, OSError) as exc:
        raise CommandError(f"the policy does not load: {exc}") from exc
    try:
        return catalog.withdraw(
            product,
            snapshot,
            reason,
            user,
            kind,
            authority=policy.decide(user, entry.spec, "grant"),
            access_log=access_log,
            roles=[f"{r}@{d}" for r, d in policy.roles(user)],
        )
    except (WithdrawError, WithdrawRefused) as exc:
        raise CommandError(str(exc)) from exc


def run_verify(args: argparse.Namespace) -> int:
    """Exit 1 if any file does not match: each is named and marked broken in the catalog (never
    served; gateways fail `/readyz`); a snapshot that verifies again has its mark lifted.
    Withdrawn, quarantined and removed snapshots are not checked (they are never served)."""
    catalog = _catalog(Settings.from_env())
    if args.product is not None and catalog.entry(args.product) is None:
        raise CommandError(f"no product named {args.product!r} has been published")
    names = [args.product] if args.product else [e.spec.name for e in catalog.entries(include_retired=True)]
    checked = broken = 0
    for name in names:
        for snap in catalog.snapshots(name):
            if not snap.servable:
                continue
            checked += 1
            problem = integrity_problem(snap.path, snap.checksum, snap.byte_size)
            if problem is None:  # lift the mark this check answered, never one made since it began
                lifted = snap.broken is not None and catalog.clear_broken(snap.id, marked_at=snap.broken_at)
                print(f"ok      {snap.id}" + ("  (verifies again: broken mark lifted)" if lifted else ""))
                continue
            broken += 1
            catalog.mark_broken(snap.id, problem, "civicmesh snapshots verify")
            print(f"BROKEN  {snap.id}  {snap.path}: {problem}")
    print(f"{checked} snapshots checked, {broken} broken")
    return 1 if broken else 0


def run_gc(args: argparse.Namespace) -> int:
    if args.grace_days < 0 or args.keep < 1:
        raise CommandError("--grace-days must be >= 0 and --keep >= 1 (the current snapshot always stays)")
    settings = Settings.from_env()
    report = collect_garbage(
        _catalog(settings), settings.snapshots_dir, grace=timedelta(days=args.grace_days), keep=args.keep
    )
    print(f"removed {len(report.removed_snapshots)} snapshots and {len(report.removed_orphans)} orphan files")
    for snapshot_id in report.removed_snapshots:
        print(f"  {snapshot_id}")
    return 0


def _checks_passed(quality: dict[str, Any] | None) -> object:
    """ "N checks passed", or what the record holds instead (None, or an empty list)."""
    checks = (quality or {}).get("checks")
    return f"{len(checks)} checks passed" if checks else checks
