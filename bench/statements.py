"""What parsing each SQL text once buys: queries (a) and (b) of bench/gateway.py, in process.

A real `Gateway` (the app `civicmesh serve` runs, without HTTP) answers `-n` requests of each
query as dana, alternating request by request between its pool's parsed statements
(`gateway/statements.py`, as served) and the baseline: the same pool handing DuckDB the SQL text,
which DuckDB's Python client parses on every `execute` (as before the statements were kept). Each
request has a timestamp never sent before (no cache answers). Alternating in one process puts both
arms under the same load, so the ratio holds on a busy machine where two separate runs would not.

Prints each arm's p50 and p95 (ms) per query, the ratio parsed/text, and the load average at
start and end.

    .venv/bin/python bench/statements.py --home /tmp/layout-homes/rows-1000000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as in bench/gateway.py: bench/ would shadow the packages

import duckdb  # noqa: E402

from bench import gateway as gw  # noqa: E402
from bench._mesh import bench_home, load_average  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.statements import Statements  # noqa: E402
from meshcore.settings import Settings  # noqa: E402

WARM_UP = 100
ARMS = ("parsed", "text")


class _Text(Statements):
    """The baseline: every SQL text handed to DuckDB as text (parsed by DuckDB on each execute)."""

    def parsed(self, cursor: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement | str:
        return sql


async def measure(settings: Settings, n: int) -> dict[str, dict[str, list[float]]]:
    """Per query, per arm: the duration (s) of each of `n` requests, the arms alternating."""
    gateway = Gateway(settings)
    principal = Principal(subject=gw.USER, claims={"sub": gw.USER})
    arms = {"parsed": gateway.duck.statements, "text": _Text()}
    samples: dict[str, dict[str, list[float]]] = {q: {arm: [] for arm in ARMS} for q in ("a", "b")}
    try:
        for i in range(WARM_UP + 2 * n):
            arm = ARMS[i % 2]
            gateway.duck.statements = arms[arm]
            for name, query in (("a", gw.QUERY_A), ("b", gw.QUERY_B)):
                variables = {"t": gw.unique_time(i + (0 if name == "a" else 50_000_000)).isoformat()}
                start = time.perf_counter()
                request_id = f"statements-{name}{i}"
                body = await gateway.execute(principal, query, variables, request_id=request_id, client=None)
                if i >= WARM_UP:
                    samples[name][arm].append(time.perf_counter() - start)
                if body.get("errors"):
                    raise RuntimeError(f"query {name} failed: {body['errors']}")
        return samples
    finally:
        gateway.close()


def report(samples: dict[str, dict[str, list[float]]]) -> None:
    for name, arms in samples.items():
        p50 = {arm: statistics.median(values) * 1000 for arm, values in arms.items()}
        for arm, values in arms.items():
            p95 = statistics.quantiles(values, n=20)[-1] * 1000
            print(f"  ({name}) {arm:<7} p50 {p50[arm]:7.3f} ms  p95 {p95:7.3f} ms  (n={len(values)})")
        print(f"  ({name}) parsed/text p50: x{p50['parsed'] / p50['text']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("-n", type=int, default=2000, help="measured requests per arm and query")
    args = parser.parse_args()
    started = time.perf_counter()
    with bench_home(args.home, "civicmesh-bench-statements-") as home:
        settings = gw.build(home, args.rows)
        print(f"== parsed statements vs SQL text, alternating: {args.rows:,} rows, as {gw.USER} ==")
        print(f"load average at start: {load_average()}")
        report(asyncio.run(measure(settings, args.n)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_average()}")


if __name__ == "__main__":
    main()
