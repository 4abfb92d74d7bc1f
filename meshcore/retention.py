"""Snapshot retention: old snapshots stay for time travel, and go only after a grace period.

Never removed: a product's current snapshot, the `keep` newest per product, and anything younger
than `grace` (a reader may have resolved it a moment ago). Files written but never registered (a
publish that crashed before its catalog commit) are removed after the same grace period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from meshcore.catalog import Catalog, products_table, snapshots_table
from meshcore.store import utcnow


@dataclass
class CollectionReport:
    removed_snapshots: list[str] = field(default_factory=list)
    removed_orphans: list[Path] = field(default_factory=list)


def collect_garbage(
    catalog: Catalog,
    snapshots_dir: Path,
    grace: timedelta,
    keep: int = 3,
    now: datetime | None = None,
) -> CollectionReport:
    now = now or utcnow()
    report = CollectionReport()
    with catalog.engine.begin() as conn:
        current = {r[0] for r in conn.execute(select(products_table.c.current_snapshot_id)) if r[0]}
        rows = conn.execute(
            select(snapshots_table).order_by(snapshots_table.c.product, snapshots_table.c.seq.desc())
        ).all()
        kept_per_product: dict[str, int] = {}
        for row in rows:
            if row.removed_at is not None:
                continue
            rank = kept_per_product.get(row.product, 0)
            kept_per_product[row.product] = rank + 1
            published = (
                row.published_at if row.published_at.tzinfo else row.published_at.replace(tzinfo=now.tzinfo)
            )
            if row.id in current or rank < keep or now - published < grace:
                continue
            conn.execute(update(snapshots_table).where(snapshots_table.c.id == row.id).values(removed_at=now))
            report.removed_snapshots.append(row.id)
        registered = {
            catalog.home.joinpath(r.path).resolve()
            for r in rows
            if r.removed_at is None and r.id not in report.removed_snapshots
        }
    # Files go only after the catalog no longer points at them; content-addressed names mean a
    # republished old version shares its file with a kept snapshot.
    for row in rows:
        path = catalog.home.joinpath(row.path).resolve()  # stored relative to the home
        if row.id in report.removed_snapshots and path not in registered:
            path.unlink(missing_ok=True)
    cutoff = (now - grace).timestamp()
    for path in snapshots_dir.rglob("*.parquet") if snapshots_dir.exists() else ():
        if path.resolve() not in registered and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            report.removed_orphans.append(path)
    return report
