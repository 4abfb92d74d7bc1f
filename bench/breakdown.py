"""Where one uncached governed read spends its time: query (a) of bench/gateway.py, in process.

A real `Gateway` (the app `civicmesh serve` runs, without HTTP) answers `-n` requests of query (a)
as dana, each with a timestamp never sent before (no cache answers), after a warm-up that loads the
hot copy and learns the compiled plan. Each step below is timed by wrapping the named function for
the run (a measurement probe; nothing else changes):

  request     Gateway.execute                 the whole request, governance and recording included
  duckdb      DuckPool._execute               the page's SQL in DuckDB (in its worker thread)
  commit      Recorder.commit                 the request's record, awaited on the event loop
  append      AccessLog.append                its group commit (in a worker thread)
  chain       AccessLog._chain                head read, rows, chain hashes, inserts, the seal
  seal        Signer.sign                     the commit's Ed25519 signature
  outbox      Outbox.write                    the OpenLineage read event's row

Baseline, same run: `hop`, an empty `anyio.to_thread.run_sync` (what moving work to a worker thread
and back costs by itself). Prints each step's median (ms), its share of the request's median and
its ratio to the hop, for each `--threads` value (DuckDB threads of the gateway's pool), with the
load average at start and end.

    .venv/bin/python bench/breakdown.py --home /tmp/layout-homes/rows-1000000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as in bench/gateway.py: bench/ would shadow the packages

import anyio.to_thread  # noqa: E402

from bench import gateway as gw  # noqa: E402
from bench._mesh import bench_home, load_average  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.duck import DuckPool  # noqa: E402
from gateway.recording import Recorder  # noqa: E402
from lineage.outbox import Outbox  # noqa: E402
from meshcore.accesslog import AccessLog  # noqa: E402
from meshcore.seals.signing import Signer  # noqa: E402
from meshcore.settings import Settings  # noqa: E402

STEPS: dict[str, tuple[type, str]] = {
    "request": (Gateway, "execute"),
    "duckdb": (DuckPool, "_execute"),
    "commit": (Recorder, "commit"),
    "append": (AccessLog, "append"),
    "chain": (AccessLog, "_chain"),
    "seal": (Signer, "sign"),
    "outbox": (Outbox, "write"),
}
WARM_UP = 200


def _probe(owner: type, name: str, samples: list[float]) -> Callable[[], None]:
    """Wrap `owner.name` to append each call's duration (s) to `samples`; returns the undo."""
    original = getattr(owner, name)
    if asyncio.iscoroutinefunction(original):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                samples.append(time.perf_counter() - start)

        setattr(owner, name, timed_async)
    else:

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                samples.append(time.perf_counter() - start)

        setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


async def _hop(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await anyio.to_thread.run_sync(lambda: None)
        samples.append(time.perf_counter() - start)
    return samples


async def _requests(gateway: Gateway, start: int, n: int) -> None:
    principal = Principal(subject=gw.USER, claims={"sub": gw.USER})
    for i in range(start, start + n):
        variables = {"t": gw.unique_time(i).isoformat()}
        body = await gateway.execute(
            principal, gw.QUERY_A, variables, request_id=f"breakdown-{i}", client=None
        )
        if len(body["data"]["publicWorks"]["serviceRequests"]["nodes"]) != 100:
            raise RuntimeError(f"expected 100 rows: {body}")


async def measure(settings: Settings, n: int, first: int) -> dict[str, list[float]]:
    """Median-ready samples of every step and of the hop, on one gateway of `settings`."""
    gateway = Gateway(settings)
    try:
        await _requests(gateway, first, WARM_UP)  # hot copy, plan, caches
        samples: dict[str, list[float]] = {step: [] for step in STEPS}
        undo = [_probe(owner, name, samples[step]) for step, (owner, name) in STEPS.items()]
        try:
            await _requests(gateway, first + WARM_UP, n)
        finally:
            for restore in undo:
                restore()
        samples["hop"] = await _hop(n)
        return samples
    finally:
        gateway.close()


def report(threads: int, samples: dict[str, list[float]]) -> None:
    medians = {step: statistics.median(values) * 1000 for step, values in samples.items() if values}
    request, hop = medians["request"], medians["hop"]
    print(f"\nDuckDB threads: {threads}  (n={len(samples['request'])} requests)")
    for step, value in medians.items():
        share = f"{value / request:6.1%} of request" if step != "request" else " " * 17
        print(f"  {step:<8} p50 {value:7.3f} ms  {share}  x{value / hop:6.2f} hop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("-n", type=int, default=2000, help="measured requests per --threads value")
    parser.add_argument("--threads", default="1,2", help="comma-separated DuckDB thread counts")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if not threads or min(threads) < 1:
        parser.error("--threads: positive integers, e.g. 1,2")
    started = time.perf_counter()
    with bench_home(args.home, "civicmesh-bench-breakdown-") as home:
        settings = gw.build(home, args.rows)
        print(f"== where an uncached governed read (a) spends its time: {args.rows:,} rows, as {gw.USER} ==")
        print(f"load average at start: {load_average()}")
        for k, count in enumerate(threads):
            extra = {**settings.extra, "duckdb_threads": str(count)}
            samples = asyncio.run(
                measure(dataclasses.replace(settings, extra=extra), args.n, 10_000_000 * (k + 1))
            )
            report(count, samples)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_average()}")


if __name__ == "__main__":
    main()
