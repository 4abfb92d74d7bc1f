"""Scaling benchmark: uncached (a) and (b) p50 as the snapshot grows, and the memory of 1 vs 2 workers.

For each size of `--rows-series` (default 100000,1000000; issue 16 asks for 100k -> 1M -> 10M,
`--rows-series 100000,1000000,10000000`, whose 10M home takes several minutes to generate and build)
a mesh home is built (or reused under `--homes`) and the governed gateway served by real uvicorn on
127.0.0.1 as in bench/gateway.py (same queries, as dana scoped to D3, same unique bound predicate
`openedAt < 2100-01-01 + i s` so no cache answers):

  1 worker    warm-up (hot snapshot copy loaded, parse/validation caches), then single-client
              p50/p95 of (a) the 100 newest potholes of D3 and (b) count and average per category
              in D3, then the server's memory
  2 workers   warm-up by 8 clients (so each worker loads its own copy), then the memory

Memory is summed over the server's process tree (uvicorn's supervisor and its workers): RSS, and
PSS, which splits pages that processes share among them (Linux /proc/<pid>/smaps_rollup); plus the
bytes of the snapshot copies (`<home>/cache/snapshot_copies`, gateway/copies.py), which sit once
in the OS page cache for all workers and in no process's RSS: "host" = PSS + copies, the memory the
host spends, is what the verdict judges.
Prints the growth of each p50 from one size to the next and from the first to the last, and issue
16's verdicts: (a) grows <= 1.5x and (b) <= 3x from 100k to 10M rows (judged on the first and last
size of the series), two workers use <= 1.3x the memory (host: PSS + copies) of one, at every size.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.gateway import (  # noqa: E402
    QUERY_A,
    QUERY_B,
    USER,
    Latency,
    Store,
    build,
    drain_lineage,
    fmt,
    hot_copies_settled,
    latency,
    load,
    ratio,
    single_client,
    start_server,
    verdict,
)
from gateway.auth import issue_token  # noqa: E402
from meshcore.settings import Settings  # noqa: E402

TARGETS = {"a_growth": 1.5, "b_growth": 3.0, "two_workers_memory": 1.3}
MIB = 1024 * 1024


async def warm(port: int, token: str, start: int) -> None:
    """Both queries by 8 clients, cached and uncached, then time for hot copies to finish loading."""
    for query in (QUERY_A, QUERY_B):
        await load(port, token, query, 8, 0.5, None)
        await load(port, token, query, 8, 1.5, start)
        start += 1_000_000
    await hot_copies_settled(port)  # a 10M copy loads for tens of seconds: measure it served hot
    for query in (QUERY_A, QUERY_B):
        await load(port, token, query, 8, 0.5, start)
        start += 1_000_000


def copies_bytes(settings: Settings) -> int:
    """Bytes of the snapshot copies on this host (shared by every worker through the page cache)."""
    folder = settings.snapshot_copies_dir
    return sum(p.stat().st_size for p in folder.glob("*.duckdb")) if folder.is_dir() else 0


def one_size(settings: Settings, n: int, seq: int) -> dict[str, object]:
    """p50 of uncached (a) and (b) with 1 worker, and (RSS, PSS, copies) with 1 and 2 workers."""
    store = Store("sqlite", settings, str(settings.audit_dir / "checkpoints.jsonl"))
    token = issue_token(settings, USER, ttl_hours=1)
    out: dict[str, object] = {}
    for workers in (1, 2):
        server = start_server(store, workers)
        try:
            asyncio.run(warm(server.port, token, seq))
            asyncio.run(drain_lineage(settings))  # the warm-up's read events, delivered first
            seq += 10_000_000
            if workers == 1:
                for name, query in (("a", QUERY_A), ("b", QUERY_B)):
                    out[name] = latency(asyncio.run(single_client(server.port, token, query, n, seq)))
                    seq += n
            out[f"memory_{workers}"] = (*server.memory(), copies_bytes(settings))
        finally:
            server.stop()
    return out


def report(figures: dict[int, dict[str, object]], load_before: str) -> None:
    print(f"\n== scaling: uncached governed reads as {USER} (scoped to D3) ==")
    print(f"load average at start: {load_before}")
    print(
        f"  {'rows':>12}  {'(a) single client':<32}  {'(b) single client':<32}  memory 1 worker -> 2 workers"
    )
    for rows, r in figures.items():
        (rss1, pss1, cp1), (rss2, pss2, cp2) = r["memory_1"], r["memory_2"]  # type: ignore[misc]
        rss = f"RSS {rss1 / MIB:6.0f} -> {rss2 / MIB:6.0f} MiB ({ratio(rss2, rss1)})"
        pss = f"PSS {pss1 / MIB:6.0f} -> {pss2 / MIB:6.0f} MiB ({ratio(pss2, pss1)})"
        host1, host2 = pss1 + cp1, pss2 + cp2
        host = f"host {host1 / MIB:6.0f} -> {host2 / MIB:6.0f} MiB ({ratio(host2, host1)})"
        print(f"  {rows:>12,}  {fmt(r['a']):<32}  {fmt(r['b']):<32}  {rss}, {pss}, {host}")
    sizes = list(figures)

    def p50(rows: int, name: str) -> float:
        lat = figures[rows][name]
        assert isinstance(lat, Latency)
        return lat.p50

    print("\ngrowth of the p50 (a larger snapshot / the smaller one)")
    steps = list(itertools.pairwise(sizes))
    for small, large in steps + ([(sizes[0], sizes[-1])] if len(steps) > 1 else []):
        a, b = (ratio(p50(large, name), p50(small, name)) for name in ("a", "b"))
        print(f"  {small:,} -> {large:,} rows ({large / small:g}x): (a) {a}  (b) {b}")
    print("\ntargets (issue 16)")
    first, last = sizes[0], sizes[-1]
    for name in ("a", "b"):
        growth, wanted = p50(last, name) / p50(first, name), TARGETS[f"{name}_growth"]
        ok = verdict(growth <= wanted)
        print(f"  ({name}) {first:,} -> {last:,} rows grows <= {wanted}x: {growth:5.2f}x  {ok}")
    for rows, r in figures.items():
        (_, pss1, cp1), (_, pss2, cp2) = r["memory_1"], r["memory_2"]  # type: ignore[misc]
        wanted, grown = TARGETS["two_workers_memory"], (pss2 + cp2) / (pss1 + cp1)
        print(
            f"  {rows:,} rows: two workers <= {wanted}x the memory (host: PSS + copies) of one: "
            f"{grown:5.2f}x  {verdict(grown <= wanted)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows-series",
        default="100000,1000000",
        help="comma-separated snapshot sizes, smallest first (issue 16: 100000,1000000,10000000)",
    )
    parser.add_argument(
        "--homes", type=Path, help="reuse (or create) the homes DIR/rows-<N> instead of temp ones"
    )
    parser.add_argument("-n", type=int, default=200, help="sequential requests per single-client case")
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows_series.split(",")]
    if len(sizes) < 2 or sizes != sorted(set(sizes)):
        parser.error("--rows-series: two or more distinct sizes, smallest first")
    started = time.perf_counter()
    tmp = None if args.homes else tempfile.mkdtemp(prefix="civicmesh-bench-scaling-")
    root = (args.homes or Path(tmp)).resolve()  # type: ignore[arg-type]
    figures: dict[int, dict[str, object]] = {}
    try:
        homes = {rows: build(root / f"rows-{rows}", rows) for rows in sizes}
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for k, (rows, settings) in enumerate(homes.items()):
            figures[rows] = one_size(settings, args.n, 100_000_000 * (k + 1))
        report(figures, load_before)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_after}")


if __name__ == "__main__":
    main()
