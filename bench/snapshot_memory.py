"""The in-memory snapshot budget (CIVICMESH_SNAPSHOT_MEMORY_MB): what a hot copy buys, and the path
when a snapshot does not fit.

One snapshot of `--rows` service requests (zstd Parquet), three gateway DuckDB pools in this process:
- "hot": a budget the copy fits in (it is loaded, then queried in memory);
- "file": budget 0 (every read from the Parquet file: the baseline);
- "unfit": a budget the estimate fits in but the copy outgrows (dropped, read from the file).
Query (a) of issue 16, "the 100 newest potholes in D3" with a distinct bound cut-off per request
(unique parameters: the result cache never answers), through the gateway's own `PageQuery`;
p50 per pool, interleaved, and the ratio to the file baseline.

    .venv/bin/python bench/snapshot_memory.py --rows 1000000
"""

from __future__ import annotations

import argparse
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


def _query(table: str | None, path: Path, cutoff: datetime) -> PageQuery:
    return PageQuery(
        spec=SPEC,
        path=str(path),
        columns=["request_id", "opened_at", "category", "address"],
        row_filter=RowFilter("district", ("D3",)),
        where={"category": {"eq": "pothole"}, "opened_at": {"lt": cutoff}},
        order_by=[("opened_at", "DESC")],
        limit=100,
        table=table,
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
        print(f"{args.rows} rows, {size / 1e6:.1f} MB Parquet")
        pools = {
            "hot": DuckPool(folder, "key", hot_budget_bytes=1 << 31),
            "file": DuckPool(folder, "key", hot_budget_bytes=0),
            # The estimate fits; the real copy outgrows 1 MiB + 32 MiB of working memory.
            "unfit": DuckPool(folder, "key", hot_budget_bytes=1 << 20, working_memory_bytes=32 << 20),
        }
        try:
            tables = {name: _hot(pool, path, 1 if name == "unfit" else size) for name, pool in pools.items()}
            print("in memory: " + ", ".join(f"{n}={'yes' if t else 'no'}" for n, t in tables.items()))
            samples: dict[str, list[float]] = {name: [] for name in pools}
            start = datetime(2021, 6, 1)
            for i in range(args.requests):
                for name, pool in pools.items():
                    query = _query(tables[name], path, start + timedelta(seconds=i * 7 + len(name)))
                    began = time.perf_counter()
                    rows = pool.run(*query.page_sql()).rows
                    samples[name].append((time.perf_counter() - began) * 1000)
                    assert len(rows) == 101
        finally:
            for pool in pools.values():
                pool.close()
    base = statistics.median(samples["file"])
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(f"  {name:<6} p50 {p50:7.2f} ms   ratio to file {p50 / base:.2f}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
