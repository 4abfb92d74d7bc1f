"""Integrity benchmark: what the checksum check on first open costs, on a 1M-row snapshot.

One run, one process, one snapshot written by the publish code (`write_snapshot`), shaped like
service requests (12 columns, ~1M rows). Each trial opens a fresh DuckPool (a new gateway process's
first read) and runs one aggregate with a predicate never seen before (no cache can answer):

  baseline    the first query on the snapshot, unchecked (before this feature)
  checked     the gateway's check (gateway.integrity.FileChecks: streaming SHA-256 in a worker
              thread) and then the same first query: the first-open cost
  steady      a later read of the same snapshot in the same process: the check is one os.stat

Figures are medians over alternating trials; the file is in the page cache (written just before),
as it is for a snapshot published on the same machine. Ratios are against the baseline of this run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "graphql"))

import duckdb  # noqa: E402

from gateway.duck import DuckPool  # noqa: E402
from meshcore.catalog import Snapshot  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.snapshots import write_snapshot  # noqa: E402

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Benchmark snapshot.",
    columns=(ColumnSpec("request_id", "varchar"),),
)
ROWS_SQL = """
SELECT printf('SR-%07d', i) AS request_id,
       TIMESTAMP '2024-01-01' + INTERVAL (i % 900000) MINUTE AS opened_at,
       ['pothole', 'graffiti', 'streetlight', 'noise', 'trash'][CAST(hash(i) % 5 AS INTEGER) + 1] AS category,
       ['open', 'closed', 'in_progress'][CAST(hash(i + 1) % 3 AS INTEGER) + 1] AS status,
       CAST(hash(i + 2) % 4 + 1 AS INTEGER) AS priority,
       'D' || (hash(i + 3) % 9 + 1) AS district,
       (hash(i + 4) % 100000) / 100.0 AS response_hours,
       'Person ' || (hash(i + 5) % 200000) AS requester_name,
       'person' || (hash(i + 5) % 200000) || '@mail.example' AS requester_email,
       (hash(i + 6) % 3000) || ' Main Street' AS address,
       40.5 + (hash(i + 7) % 100000) / 200000.0 AS latitude,
       -74.2 + (hash(i + 8) % 100000) / 200000.0 AS longitude
FROM range(?) t(i)
"""
QUERY = (
    "SELECT category, count(*), avg(response_hours) FROM read_parquet(?) "
    "WHERE district = 'D3' AND response_hours < ? GROUP BY 1 ORDER BY 1"
)


def _snapshot(folder: Path, rows: int) -> Snapshot:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {ROWS_SQL}", [rows])
    written = write_snapshot(con, "t", folder, order_by=(("district", "ASC"), ("request_id", "ASC")))
    con.close()
    return Snapshot(
        id="bench@1",
        product=SPEC.name,
        path=written.path,
        checksum=written.checksum,
        row_count=written.row_count,
        byte_size=written.byte_size,
        schema=written.schema,
        spec=SPEC,
        published_at=datetime.now(UTC),
        quality=None,
        run_id=None,
    )


async def _trial(folder: Path, snap: Snapshot, bound: float, check: bool) -> dict[str, float]:
    """Seconds: the check on first open, the first query, the check on a later read, that read."""
    pool = DuckPool(folder, "bench-key", workers=2)
    path = str(snap.path.resolve())
    timings: dict[str, float] = {}
    try:
        for phase, offset in (("first", 1e9), ("later", 2e9)):
            started = time.perf_counter()
            if check:
                detail, _ = await pool.checks.problem(snap)
                assert detail is None, detail
            checked = time.perf_counter()
            await pool.run_async(QUERY, [path, offset + bound])  # a predicate never seen before
            timings[f"{phase}_check"] = checked - started
            timings[f"{phase}_query"] = time.perf_counter() - checked
    finally:
        pool.close()
    return timings


async def _run(folder: Path, snap: Snapshot, trials: int) -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {"baseline": {}, "checked": {}}
    for i in range(trials):
        for check in (False, True) if i % 2 == 0 else (True, False):
            timings = await _trial(folder, snap, i * 2 + check, check)
            for key, value in timings.items():
                runs["checked" if check else "baseline"].setdefault(key, []).append(value)
    return runs


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-integrity-") as tmp:
        folder = Path(tmp)
        snap = _snapshot(folder, args.rows)
        runs = asyncio.run(_run(folder, snap, args.trials))
    base, checked = runs["baseline"], runs["checked"]
    mb = snap.byte_size / 1e6
    check_ms = _ms(checked["first_check"])
    first_base = _ms(base["first_query"])
    first_checked = _ms([c + q for c, q in zip(checked["first_check"], checked["first_query"], strict=True)])
    later_base = _ms(base["later_query"])
    later_checked = _ms([c + q for c, q in zip(checked["later_check"], checked["later_query"], strict=True)])
    print(
        f"snapshot: {snap.row_count:,} rows, {mb:.1f} MB (zstd Parquet); {args.trials} trials each, medians"
    )
    print(
        f"checksum check on first open:     {check_ms:8.1f} ms  "
        f"(SHA-256 at {mb / (check_ms / 1000):.0f} MB/s)"
    )
    print(f"first read, unchecked (baseline): {first_base:8.1f} ms")
    print(f"first read, checked:              {first_checked:8.1f} ms  x{first_checked / first_base:.2f}")
    print(f"later read, unchecked:            {later_base:8.1f} ms")
    print(
        f"later read, checked:              {later_checked:8.1f} ms  x{later_checked / later_base:.2f} "
        f"(the check: {_ms(checked['later_check']) * 1000:.0f} us, one os.stat)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
