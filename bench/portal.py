"""Portal benchmark: server time of the staff portal's pages vs the same governed reads over HTTP.

One run, one server (real uvicorn, demo mode so a persona can sign in), the mesh built with 1M
service requests. As dana (public_works supervisor, district D3 only, requester PII masked):

  catalog   GET /                                   vs POST /graphql of the portal's catalog document
  about     GET /products/<sr>                      vs POST /graphql of its About document
  data      GET /products/<sr>/data?<filter>        vs POST /graphql of its product, then its rows

The baseline is the equivalent GraphQL over HTTP with a bearer token: the same governed documents
(decisions, masks, row scope, access-log commits) the page runs in-process, without the page
(Jinja2, the session, the CSRF token). Uncached cost: every Data request carries a distinct, always-true
filter (`openedAt < 2100-01-01 + i s`), so neither DuckDB's result cache nor any response cache
answers it; the catalog and About documents read no rows (the portal runs them in-process, where no
response cache exists; over HTTP their `freshness` field makes them uncacheable too). Single
client, keep-alive, the two sides interleaved in rounds so machine load hits both alike. Target:
each page's server time (its `Server-Timing: page`) p50 <= 50 ms; the time the client saw is
printed beside it. Prints the load average at start and end (the machine is shared).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

# Run as `python bench/portal.py`: Python puts bench/ first on the path, where gateway.py and
# lineage.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import httpx  # noqa: E402

from bench._mesh import UvicornServer  # noqa: E402
from bench.gateway import build  # noqa: E402
from gateway.auth import issue_token  # noqa: E402
from portal import documents  # noqa: E402

USER = "dana"
PRODUCT = "public_works.service_requests"
FAR_FUTURE = datetime(2100, 1, 1)
TARGET_MS = 50.0
# The product field's where/orderBy for the Data tab's default view (25 rows, by the key).
PAGE_SIZE = 25


def unique_time(i: int) -> str:
    return (FAR_FUTURE + timedelta(seconds=i)).isoformat()


def p50_p95(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def sign_in(url: str, persona: str) -> httpx.Client:
    """A browser-like client signed in through the demo persona picker (CSRF token and all)."""
    client = httpx.Client(base_url=url, timeout=60)
    page = client.get("/login").text
    token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    response = client.post("/login/demo", data={"persona": persona, "next": "/", "csrf_token": token})
    if response.status_code != 303:
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    return client


Case = tuple[Callable[[int], str], Callable[[int], list[bytes]]]


def cases(api: httpx.Client) -> dict[str, Case]:
    """name -> (portal path for request i, the GraphQL bodies the page runs for request i)."""
    product = graphql(api, documents.PRODUCT, {"name": PRODUCT})["data"]["product"]
    rows = documents.rows_document(documents.Names.of(product))

    def body(document: str, variables: dict[str, object]) -> bytes:
        return json.dumps({"query": document, "variables": variables}).encode()

    def data(i: int) -> list[bytes]:
        where = {"openedAt": {"lt": unique_time(i)}}
        return [
            body(documents.PRODUCT, {"name": PRODUCT}),
            body(rows, {"where": where, "orderBy": None, "first": PAGE_SIZE, "after": None}),
        ]

    about = {"name": PRODUCT, "department": PRODUCT.split(".")[0]}
    return {
        "catalog": (lambda i: "/", lambda i: [body(documents.CATALOG, {})]),
        "about": (lambda i: f"/products/{PRODUCT}", lambda i: [body(documents.ABOUT, about)]),
        "data": (lambda i: f"/products/{PRODUCT}/data?col=openedAt&op=lt&val={unique_time(i)}", data),
    }


def graphql(api: httpx.Client, document: str, variables: dict[str, object]) -> dict:
    response = api.post("/graphql", json={"query": document, "variables": variables})
    data = response.json()
    if response.status_code != 200 or data.get("errors"):
        raise RuntimeError(f"bad GraphQL response {response.status_code}: {response.text[:300]}")
    return data


def timed_get(browser: httpx.Client, path: str) -> tuple[float, float]:
    """(seconds seen by the client, seconds the server says the page took: `Server-Timing` page)."""
    t0 = time.perf_counter()
    response = browser.get(path)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[-300:]}")
    server = re.search(r"page;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if server is None:
        raise RuntimeError(f"{path}: no Server-Timing header")
    return elapsed, float(server.group(1)) / 1000


def timed_posts(api: httpx.Client, bodies: list[bytes]) -> float:
    t0 = time.perf_counter()
    for body in bodies:
        response = api.post("/graphql", content=body, headers={"Content-Type": "application/json"})
        if response.status_code != 200 or b'"errors"' in response.content:
            raise RuntimeError(f"graphql: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - t0


def measure(url: str, token: str, n: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    browser = sign_in(url, USER)
    api = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    try:
        chosen = cases(api)
        # correctness first: the portal's Data tab shows dana's scope and masks
        page = browser.get(chosen["data"][0](0)).text
        assert "you see district D3 only" in page and "masked: hash" in page, "unexpected Data tab"
        seq = 1
        # Each request gets its own `i` (never the other side's: DuckDB's result cache would answer).
        for path, body in chosen.values():  # warm-up: hot snapshot copy, parse/validation caches
            for _ in range(20):
                timed_get(browser, path(seq))
                timed_posts(api, body(seq + 1))
                seq += 2
        time.sleep(3)  # the in-memory copy of the snapshot finishes loading in the background
        sides = ("portal", "server", "graphql")
        samples: dict[str, dict[str, list[float]]] = {k: {side: [] for side in sides} for k in chosen}
        for _ in range(rounds):
            for name, (path, body) in chosen.items():
                for _ in range(n // rounds):
                    client, server = timed_get(browser, path(seq))
                    samples[name]["portal"].append(client)
                    samples[name]["server"].append(server)
                    samples[name]["graphql"].append(timed_posts(api, body(seq + 1)))
                    seq += 2
        return samples
    finally:
        browser.close()
        api.close()


def report(rows: int, samples: dict[str, dict[str, list[float]]], load_before: str) -> None:
    print(f"\n== portal benchmark: {rows:,} service requests, as {USER} (D3 only, PII masked) ==")
    print(f"load average at start: {load_before}")
    print("single client, keep-alive on 127.0.0.1; 'server' is the page's own Server-Timing\n")
    print(
        f"  {'page':<8} {'server p50':>11} {'p95':>9}   {'client p50':>11} {'p95':>9}   "
        f"{'GraphQL p50':>11} {'p95':>9}   client/GraphQL"
    )
    verdicts = []
    for name, sides in samples.items():
        server, portal, api = (p50_p95(sides[k]) for k in ("server", "portal", "graphql"))
        cells = "   ".join(f"{p50:8.2f} ms {p95:6.2f} ms" for p50, p95 in (server, portal, api))
        print(f"  {name:<8} {cells}   {portal[0] / api[0]:5.2f}x   (n={len(sides['portal'])})")
        verdicts.append((name, server[0]))
    print("\ntargets")
    for name, p50 in verdicts:
        verdict = "MET" if p50 <= TARGET_MS else "not met"
        print(f"  {name} page server time p50 <= {TARGET_MS:.0f} ms: {p50:6.2f} ms  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("-n", type=int, default=200, help="requests per page and side")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = None if args.home else tempfile.mkdtemp(prefix="civicmesh-bench-portal-")
    home = args.home or Path(tmp)  # type: ignore[arg-type]
    server = None
    try:
        settings = build(home.resolve(), args.rows)
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        env = {
            "CIVICMESH_HOME": str(settings.home),
            "CIVICMESH_METADATA_URL": settings.metadata_url,
            "CIVICMESH_DEMO": "1",  # a persona can sign in
        }
        server = UvicornServer("civicmesh.asgi:create_app", settings.home, env)
        token = issue_token(settings, USER, ttl_hours=1)
        samples = measure(server.url, token, args.n, args.rounds)
        from meshcore.catalog import Catalog
        from meshcore.store import get_engine

        snap = Catalog(get_engine(settings.metadata_url)).entry(PRODUCT).current  # type: ignore[union-attr]
        report(snap.row_count if snap else args.rows, samples, load_before)
    finally:
        if server is not None:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_after}")


if __name__ == "__main__":
    main()
