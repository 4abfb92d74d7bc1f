"""PostgreSQL for the benchmarks: the tests' throwaway cluster (tests/pg.py), with durable settings,
a copy of a built home's catalog into it, so both stores serve the very same snapshots, and a
snapshot's Parquet file loaded into an indexed table (the baseline of bench/gateway.py).

Durability matches the SQLite store's (WAL, synchronous=NORMAL: safe across a process crash,
consistent across power loss, the last commits may be lost): fsync and full-page writes on,
`synchronous_commit=off` (commits do not wait for the WAL flush; the WAL writer flushes within
200 ms). Figures with `synchronous_commit=on` would add one fsync per commit. JIT is off, as on a
server tuned for short queries (its compile time would dominate a GROUP BY of ~100k rows), and
shared_buffers holds a 1M-row table with its index.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb
from sqlalchemy import MetaData

from meshcore import catalog
from meshcore.store import get_engine
from tests.pg import SUPERUSER, PgCluster, start_cluster

DURABLE = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}
TUNED = {"jit": "off", "shared_buffers": "256MB"}
# DuckDB's type names (DESCRIBE) -> PostgreSQL's; any other type is refused, not guessed.
PG_TYPES = {
    "VARCHAR": "text",
    "BOOLEAN": "boolean",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}


def durable_cluster() -> PgCluster:
    return start_cluster({**DURABLE, **TUNED})


def conninfo(cluster: PgCluster, database: str) -> str:
    """A libpq connection string for psycopg (the cluster trusts local connections)."""
    return f"host=127.0.0.1 port={cluster.port} user={SUPERUSER} dbname={database}"


def load_parquet(dsn: str, table: str, parquet: Path, indexes: tuple[str, ...]) -> int:
    """Create `table` with the Parquet file's columns, COPY its rows in (DuckDB writes a CSV, psycopg
    streams it), build `indexes` (each what follows `CREATE INDEX ON table`, e.g. "(a, b DESC)" or
    "(a) INCLUDE (b)") and ANALYZE.
    Returns the row count. ValueError for a column type without a PostgreSQL twin in PG_TYPES."""
    import psycopg

    source = f"read_parquet('{parquet}')"
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-copy-") as tmp:
        csv = Path(tmp) / "rows.csv"
        con = duckdb.connect()
        try:
            columns = [
                (str(c[0]), str(c[1])) for c in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            ]
            unknown = [f"{name} {kind}" for name, kind in columns if kind not in PG_TYPES]
            if unknown:
                raise ValueError(f"no PostgreSQL type for: {', '.join(unknown)}")
            con.execute(f"COPY (SELECT * FROM {source}) TO '{csv}' (FORMAT csv, HEADER false)")
        finally:
            con.close()
        names = ", ".join(f'"{name}"' for name, _ in columns)
        typed = ", ".join(f'"{name}" {PG_TYPES[kind]}' for name, kind in columns)
        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute(f"CREATE TABLE {table} ({typed})")
            copy_rows = f"COPY {table} ({names}) FROM STDIN (FORMAT csv)"
            with pg.cursor() as cur, cur.copy(copy_rows) as copy, csv.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    copy.write(chunk)
            for index in indexes:
                pg.execute(f"CREATE INDEX ON {table} {index}")
            pg.execute(f"VACUUM ANALYZE {table}")
            row = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def copy_tables(source_url: str, target_url: str, metadata: MetaData = catalog.metadata) -> None:
    """Create `metadata`'s tables at `target_url` and copy every row from `source_url` (parents first)."""
    source, target = get_engine(source_url), get_engine(target_url)
    metadata.create_all(target)
    with source.connect() as read, target.begin() as write:
        for table in metadata.sorted_tables:
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:
                write.execute(table.insert(), rows)
