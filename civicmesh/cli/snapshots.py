"""`civicmesh snapshots list|gc`: the published versions of a product, and retention."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from civicmesh.catalog import Catalog
from civicmesh.cli import CommandError
from civicmesh.retention import collect_garbage
from civicmesh.settings import Settings
from civicmesh.store import get_engine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("snapshots", help="list a product's snapshots; remove expired ones")
    commands = parser.add_subparsers(dest="snapshots_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="every snapshot of PRODUCT, newest first")
    listing.add_argument("product")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_snapshots)
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
            "quality": (s.quality or {}).get("checks") and f"{len(s.quality['checks'])} checks passed",
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
    return 0


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
