"""Inline literals vs variables: query (a) of bench/gateway.py with its value inlined, passed as a
variable, and as the cached body, on one governed server, in the same run (issue 16, item 2).

Forms, each request a body never sent before (a distinct timestamp per request, never a rotation):

  inline        the timestamp written into the document: misses the text caches, hits the shape
                validated by the first request of that form (ValuesOfCorrectType alone, `gateway.shapes`)
  inline_new    the same with a distinct operation name per request: a shape never seen, so parsing
                and every validation rule run (what `inline` cost before shapes)
  variables     the document fixed, the timestamp in `variables`: hits the parse and validation caches
  cached        the same body every time: the response cache answers (the floor of the gateway)

Single client, sequential keep-alive requests, the forms interleaved in rounds so machine load hits
each alike; prints p50/p95 per form and the ratios inline/variables (the goal: about 1.0) and
inline_new/variables (the cost before), with the load average at start and end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # as in bench/gateway.py: bench/ would shadow the packages

from bench import gateway as gw  # noqa: E402
from meshcore.catalog import Catalog  # noqa: E402
from meshcore.store import get_engine  # noqa: E402

Body = Callable[[int], bytes]


def _literal(i: int) -> str:
    return json.dumps(gw.unique_time(i).isoformat())


def _inline(i: int) -> bytes:
    query = gw.QUERY_A.replace("query A($t: DateTime!)", "query A").replace("$t", _literal(i))
    return json.dumps({"query": query}).encode()


def _inline_new(i: int) -> bytes:
    query = gw.QUERY_A.replace("query A($t: DateTime!)", f"query A{i}").replace("$t", _literal(i))
    return json.dumps({"query": query}).encode()


def _variables(i: int) -> bytes:
    return gw.body_for(gw.QUERY_A, i, gw.FAR_FUTURE)


def _cached(_: int) -> bytes:
    return gw.body_for(gw.QUERY_A, None, gw.FAR_FUTURE)


FORMS: dict[str, Body] = {
    "inline": _inline,
    "inline_new": _inline_new,
    "variables": _variables,
    "cached": _cached,
}


async def _run(port: int, token: str, body: Body, start: int, n: int) -> list[float]:
    """`n` sequential requests of one form on one keep-alive connection; each answer is checked."""
    conn = await gw.Connection(port, token).open()
    samples = []
    try:
        for i in range(start, start + n):
            payload = body(i)
            t0 = time.perf_counter()
            status, answer = await conn.post(payload)
            samples.append(time.perf_counter() - t0)
            nodes = gw.check(status, answer)["data"]["publicWorks"]["serviceRequests"]["nodes"]
            if len(nodes) != 100:
                raise RuntimeError(f"expected 100 rows, got {len(nodes)}")
    finally:
        await conn.close()
    return samples


async def measure(port: int, token: str, n: int, rounds: int) -> dict[str, gw.Latency]:
    for k, body in enumerate(FORMS.values()):  # hot snapshot, caches, the shape of `inline`
        await _run(port, token, body, 1_000_000 * (k + 1), 20)
    await gw.hot_copies_settled(port)  # the hot copy loads in the background (compressed, in chunks)
    samples: dict[str, list[float]] = {name: [] for name in FORMS}
    seq = 10_000_000
    for _ in range(rounds):
        for name, body in FORMS.items():
            samples[name].extend(await _run(port, token, body, seq, n // rounds))
            seq += n
    return {name: gw.latency(values) for name, values in samples.items()}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(rows: int, results: dict[str, gw.Latency], load_before: str) -> None:
    print(f"\n== inline literals vs variables: query (a), {rows:,} service requests, as {gw.USER} ==")
    print(f"load average at start: {load_before}")
    for name, lat in results.items():
        print(f"  {name:<11} {gw.fmt(lat)}  (n={lat.n})")
    variables = results["variables"].p50
    print("\nratios (p50)")
    print(f"  inline/variables:     {gw.ratio(results['inline'].p50, variables)}  (goal: about 1)")
    before = gw.ratio(results["inline_new"].p50, variables)
    print(f"  inline_new/variables: {before}  (every rule, as before)")
    print(f"  inline/inline_new:    {gw.ratio(results['inline'].p50, results['inline_new'].p50)}")
    print(f"  variables/cached:     {gw.ratio(variables, results['cached'].p50)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("-n", type=int, default=400, help="requests per form")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over the forms")
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = None if args.home else tempfile.mkdtemp(prefix="civicmesh-bench-literals-")
    home = args.home or Path(tmp)  # type: ignore[arg-type]
    server = None
    try:
        settings = gw.build(home.resolve(), args.rows)
        entry = Catalog(get_engine(settings.metadata_url), settings.home).entry(gw.PRODUCT)
        assert entry is not None and entry.current is not None
        from gateway.auth import issue_token

        token = issue_token(settings, gw.USER, ttl_hours=1)
        load_before = _load()
        store = gw.Store("sqlite", settings, settings.audit_sink)
        server = gw.start_server(store, workers=1)  # one worker: one set of caches
        results = asyncio.run(measure(server.port, token, args.n, args.rounds))
        report(entry.current.row_count, results, load_before)
    finally:
        if server is not None:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {_load()}")


if __name__ == "__main__":
    main()
