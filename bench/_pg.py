"""PostgreSQL for the benchmarks: the tests' throwaway cluster (tests/pg.py), with durable settings,
and a copy of a built home's catalog into it, so both stores serve the very same snapshots.

Durability matches the SQLite store's (WAL, synchronous=NORMAL: safe across a process crash,
consistent across power loss, the last commits may be lost): fsync and full-page writes on,
`synchronous_commit=off` (commits do not wait for the WAL flush; the WAL writer flushes within
200 ms). Figures with `synchronous_commit=on` would add one fsync per commit.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from meshcore import catalog
from meshcore.store import get_engine
from tests.pg import PgCluster, start_cluster

DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}


def durable_cluster() -> PgCluster:
    return start_cluster(DURABLE)


def copy_tables(source_url: str, target_url: str, metadata: MetaData = catalog.metadata) -> None:
    """Create `metadata`'s tables at `target_url` and copy every row from `source_url` (parents first)."""
    source, target = get_engine(source_url), get_engine(target_url)
    metadata.create_all(target)
    with source.connect() as read, target.begin() as write:
        for table in metadata.sorted_tables:
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:
                write.execute(table.insert(), rows)
