"""The snapshot copy budget (CIVICMESH_SNAPSHOT_MEMORY_MB): what a hot copy (a local DuckDB copy of
the snapshot, gateway/copies.py) buys, and the path when a snapshot does not fit.

One snapshot of `--rows` service requests (zstd Parquet, in no stated order), three gateway DuckDB
pools in this process:
- "hot": a budget the copy fits in (it is built and attached, then queried);
- "file": budget 0 (every read from the Parquet file: the baseline);
- "unfit": a budget the estimate fits in but the copy outgrows (dropped, read from the file);
and the same rows written as publish writes them (`write_snapshot` in the product's order: district,
then `cluster_by` opened_at DESC, then the key), read with the order the file states
(`DuckPool.read_file_order`, so the page is read without ORDER BY: `PageQuery.presorted`):
- "hot+order": from its copy; "file+order": budget 0, from the file (a snapshot too big for the budget).
Query (a) of issue 16, "the 100 newest potholes in D3" with a distinct bound cut-off per request
(unique parameters: the result cache never answers), through the gateway's own `PageQuery`;
p50 per pool, interleaved, and the ratio to the file baseline.

    .venv/bin/python bench/snapshot_memory.py --rows 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import duckdb  # noqa: E402

from gateway.duck import DuckPool  # noqa: E402
from gateway.query import PageQuery  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.snapshots import snapshot_order, write_snapshot  # noqa: E402
from policies.decision import RowFilter  # noqa: E402

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="bench",
    scope_column="district",
    columns=(
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("opened_at", "timestamp"),
        ColumnSpec("category", "varchar"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("address", "varchar"),
    ),
)
ORDERED = dataclasses.replace(SPEC, key="request_id", cluster_by=(("opened_at", "DESC"),))
SQL = """
SELECT printf('SR-%08d', i) AS request_id,
       TIMESTAMP '2020-01-01' + INTERVAL (i) MINUTE AS opened_at,
       ['pothole', 'graffiti', 'streetlight', 'noise'][i % 4 + 1] AS category,
       'D' || (i % 9 + 1) AS district,
       i || ' Main Street' AS address
FROM range({rows}) t(i)
"""


def _write(path: Path, rows: int) -> int:
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({SQL.format(rows=rows)}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()
    return path.stat().st_size


def _publish(folder: Path, rows: int) -> Path:
    """The rows as publish writes ORDERED's snapshot (its order, stated in the file)."""
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {SQL.format(rows=rows)}")
        return write_snapshot(con, "t", folder, snapshot_order(ORDERED)).path
    finally:
        con.close()


def _query(pool: DuckPool, table: str | None, path: Path, cutoff: datetime, ordered: bool) -> PageQuery:
    return PageQuery(
        spec=ORDERED if ordered else SPEC,
        path=str(path),
        columns=["request_id", "opened_at", "category", "address"],
        row_filter=RowFilter("district", ("D3",)),
        where={"category": {"eq": "pothole"}, "opened_at": {"lt": cutoff}},
        order_by=[("opened_at", "DESC")],
        limit=100,
        table=table,
        file_order=pool.read_file_order(str(path), key=ORDERED.key if ordered else None),
    )


def _hot(pool: DuckPool, path: Path, size: int) -> str | None:
    pool.source(str(path), size)
    deadline = time.monotonic() + 300
    while str(path) in pool._loading and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool.source(str(path), size)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="civicmesh-hot-") as tmp:
        folder = Path(tmp)
        path = folder / "snapshot.parquet"
        size = _write(path, args.rows)
        ordered = _publish(folder, args.rows)
        in_order = ordered.stat().st_size
        print(f"{args.rows} rows, {size / 1e6:.1f} MB Parquet ({in_order / 1e6:.1f} MB in order)")
        pools = {
            "hot": DuckPool(folder, "key", hot_budget_bytes=1 << 31),
            "file": DuckPool(folder, "key", hot_budget_bytes=0),
            # The estimate fits; the real copy outgrows 1 MiB + 32 MiB of working memory.
            "unfit": DuckPool(folder, "key", hot_budget_bytes=1 << 20, working_memory_bytes=32 << 20),
            "hot+order": DuckPool(folder, "key", hot_budget_bytes=1 << 31),
            "file+order": DuckPool(folder, "key", hot_budget_bytes=0),
        }
        try:
            files = {name: ordered if name.endswith("+order") else path for name in pools}
            tables = {
                name: _hot(pool, files[name], 1 if name == "unfit" else files[name].stat().st_size)
                for name, pool in pools.items()
            }
            print("attached copy: " + ", ".join(f"{n}={'yes' if t else 'no'}" for n, t in tables.items()))
            samples: dict[str, list[float]] = {name: [] for name in pools}
            start = datetime(2021, 6, 1)
            for i in range(args.requests):
                for name, pool in pools.items():
                    cutoff = start + timedelta(seconds=i * 7 + len(name))
                    query = _query(pool, tables[name], files[name], cutoff, name.endswith("+order"))
                    began = time.perf_counter()
                    rows = pool.run(*query.page_sql()).rows
                    samples[name].append((time.perf_counter() - began) * 1000)
                    assert len(rows) == 101 and query.presorted() == name.endswith("+order")
        finally:
            for pool in pools.values():
                pool.close()
    base = statistics.median(samples["file"])
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"  {name:<10} p50 {p50:7.2f} ms   ratio to file {p50 / base:.2f}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
