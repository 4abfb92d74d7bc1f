"""Gateway benchmark: the governed gateway vs raw DuckDB, an indexed PostgreSQL, and itself ungoverned.

One run, one process tree, the same 1M-row service-requests snapshot:

  floor       DuckDB in-process on the snapshot (the Parquet file, and an in-memory copy of it)
  postgres    the snapshot COPYed into a table of a PostgreSQL 15 server started for the run
              (bench/_pg.py), with the composite index that fits (a), (district, category,
              opened_at DESC, request_id), and a covering one for (b), (district, opened_at)
              INCLUDE (category, response_hours), queried by psycopg 3 as prepared statements of
              the floor's SQL: the issue-16 baseline (raw PostgreSQL, no GraphQL layer in front)
  governed    real uvicorn on 127.0.0.1: JWT, decision, masks, row scope, access log, lineage
  ungoverned  the same app with every decision allowing, unmasked and unscoped, and nothing recorded
              in the access log or lineage (bench/_ungoverned.py, built from public pieces)

Queries, as dana (public_works supervisor scoped to district D3):
  (a) the 100 most recent potholes of D3 (with two masked PII columns)
  (b) count and average response hours per category in D3
  (c) (a) and (b) again with a warm cache (same body: the response cache answers)

Uncached requests defeat both caches honestly: each carries a distinct, always-true bound
predicate (`openedAt < 2100-01-01 + i s`), which the floor queries carry too.
Single client: p50/p95 over sequential requests; throughput: 8 concurrent keep-alive clients
(a small asyncio HTTP/1.1 client, cheaper than httpx so the client does not eat the server's CPU;
for PostgreSQL, 8 threads with a connection each). Server CPU per request: the CPU time (user +
system, /proc) of the server's process tree over the single-client runs, divided by their
requests: for civicmesh its uvicorn workers (their background recording and lineage delivery
included), for PostgreSQL the postmaster's tree. It does not depend on how the machine schedules
the run, as wall-clock latency does. Prints civicmesh/PostgreSQL ratios and the verdicts of issue
16's targets: (a) p50 <= PostgreSQL's and <= 3 ms, server CPU per request <= PostgreSQL's,
>= 1,000 req/s at 8 clients; (b) >= 3x faster than PostgreSQL's GROUP BY.

`--metadata pg` keeps the metadata store (catalog, access log, lineage outbox) on that PostgreSQL
server; `--metadata both` adds a third server, `governed_pg`, the governed gateway on PostgreSQL
over the same home and snapshot, measured in the same rounds. Each store has its own checkpoint
sink (a sink holds one log's chain; two logs sealing into one refuse each other's checkpoints),
and after the run `civicmesh audit verify` checks each governed store's log against its sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import duckdb  # noqa: E402

from bench import _mesh, _pg  # noqa: E402
from meshcore.catalog import Catalog  # noqa: E402
from meshcore.settings import Settings  # noqa: E402
from meshcore.store import get_engine  # noqa: E402

USER = "dana"
PRODUCT = "public_works.service_requests"
FAR_FUTURE = datetime(2100, 1, 1)
ROWS_A = "requestId openedAt category status priority district address requesterName"
QUERY_A = (
    "query A($t: DateTime!) { publicWorks { serviceRequests("
    'where: {district: {eq: "D3"}, category: {eq: "pothole"}, openedAt: {lt: $t}}, '
    "orderBy: [{openedAt: DESC}], first: 100) { nodes { " + ROWS_A + " } "
    "pageInfo { hasNextPage endCursor } } } }"
)
QUERY_B = (
    "query B($t: DateTime!) { publicWorks { serviceRequestsAggregate("
    'where: {district: {eq: "D3"}, openedAt: {lt: $t}}, groupBy: [CATEGORY]) '
    "{ groups { key { category } count avg(column: RESPONSE_HOURS) } } } }"
)
FLOOR_A = (
    "SELECT request_id, opened_at, category, status, priority, district, address, requester_name "
    "FROM {src} WHERE district = ? AND category = ? AND opened_at < ? "
    "ORDER BY opened_at DESC, request_id ASC LIMIT 101"
)
FLOOR_B = (
    "SELECT category, count(*), CAST(avg(response_hours) AS DOUBLE PRECISION) FROM {src} "
    "WHERE district = ? AND opened_at < ? GROUP BY 1 ORDER BY 1"
)
TARGETS = {"a_p50_ms": 8.0, "b_p50_ms": 20.0, "governance_overhead": 0.25, "cached_p50_ms": 2.0}
TARGET_RPS = 500.0
# Issue 16: (a) as cheap as an indexed PostgreSQL (p50 <= its p50 and <= 3 ms, >= 1,000 req/s at
# 8 clients); (b) at least 3x faster than PostgreSQL's GROUP BY.
PG_TARGETS = {"a_p50_ms": 3.0, "a_rps": 1000.0, "b_speedup": 3.0}
PG_TABLE = "service_requests"
# (a): the composite B-tree of its filter and order; (b): a covering index, so PostgreSQL's best plan
# for the GROUP BY is an index-only scan of D3's rows rather than a scan of the table.
PG_INDEXES = (
    "(district, category, opened_at DESC, request_id)",
    "(district, opened_at) INCLUDE (category, response_hours)",
)
PARAMS: dict[str, Callable[[int], list[object]]] = {
    "a": lambda i: ["D3", "pothole", unique_time(i)],
    "b": lambda i: ["D3", unique_time(i)],
}


# -- statistics ---------------------------------------------------------------------------------


@dataclass
class Latency:
    p50: float
    p95: float
    n: int


def latency(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Latency(p50=statistics.median(ordered) * 1000, p95=p95 * 1000, n=len(ordered))


def unique_time(i: int) -> datetime:
    return FAR_FUTURE + timedelta(seconds=i)


# -- a minimal keep-alive HTTP/1.1 client ---------------------------------------------------------


class Connection:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.head = (
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError("response without Content-Length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def body_for(query: str, i: int | None, cached_t: datetime) -> bytes:
    t = unique_time(i) if i is not None else cached_t
    return json.dumps({"query": query, "variables": {"t": t.isoformat()}}).encode()


def check(status: int, body: bytes) -> dict:
    data = json.loads(body)
    if status != 200 or data.get("errors") or data.get("data") is None:
        raise RuntimeError(f"bad response {status}: {body[:300]!r}")
    return data


async def single_client(port: int, token: str, query: str, n: int, start: int | None) -> list[float]:
    """n sequential requests on one keep-alive connection; `start` None = the same (cached) body."""
    conn = await Connection(port, token).open()
    samples = []
    try:
        for k in range(n):
            body = body_for(query, None if start is None else start + k, FAR_FUTURE)
            t0 = time.perf_counter()
            status, payload = await conn.post(body)
            samples.append(time.perf_counter() - t0)
            if status != 200:
                check(status, payload)
    finally:
        await conn.close()
    return samples


async def load(port: int, token: str, query: str, clients: int, seconds: float, start: int | None) -> float:
    """req/s of `clients` concurrent keep-alive clients for a bounded time (and request count)."""
    counter = [start or 0]
    deadline = time.perf_counter() + seconds
    done = [0]

    async def client() -> None:
        conn = await Connection(port, token).open()
        try:
            while time.perf_counter() < deadline and done[0] < 50_000:
                i = None
                if start is not None:
                    counter[0] += 1
                    i = counter[0]
                status, payload = await conn.post(body_for(query, i, FAR_FUTURE))
                if status != 200:
                    check(status, payload)
                done[0] += 1
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done[0] / (time.perf_counter() - t0)


_HOT = re.compile(r"(\d+) snapshots? in local copies .*?, (\d+) loading, (\d+) read from their files")


def _hot_state(port: int) -> tuple[int, int, int] | None:
    """(held, loading, read from files) from one worker's `/readyz` `snapshot_memory` check."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            body = answer.read()
    except urllib.error.HTTPError as refused:  # 503 while another check fails: still has the detail
        body = refused.read()
    detail = json.loads(body)["checks"]["snapshot_memory"]["detail"]
    found = _HOT.search(detail)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


async def hot_copies_settled(port: int, timeout: float = 600.0, agreeing: int = 20) -> float:
    """Wait until every worker's hot copies have finished loading: `agreeing` `/readyz` answers in
    a row (each from one worker, new connection each) say nothing is loading, once one said
    something was loaded or left to its file. Returns the seconds waited; RuntimeError after `timeout`.
    A fixed sleep measured part of the 10M run on Parquet while its copy was still loading."""
    t0 = time.perf_counter()
    settled, served = 0, False
    while settled < agreeing:
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"hot copies still loading after {timeout:.0f} s")
        state = await asyncio.to_thread(_hot_state, port)
        # A worker may have had no read at all (the warm-up's keep-alive connections can all land
        # on one worker): it loads nothing, and waiting for it to hold a copy would never end.
        served = served or (state is not None and state[0] + state[2] > 0)
        done = served and state is not None and state[1] == 0
        settled = settled + 1 if done else 0
        await asyncio.sleep(0.05 if done else 0.5)
    return time.perf_counter() - t0


# -- servers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """One metadata store under test, and the checkpoint sink its log seals into (its own)."""

    name: str
    settings: Settings
    sink: str


def start_server(store: Store, workers: int, governance_off: bool = False) -> _mesh.UvicornServer:
    factory = "bench._ungoverned:create_app" if governance_off else "civicmesh.asgi:create_app"
    env = {
        "CIVICMESH_HOME": str(store.settings.home),
        "CIVICMESH_METADATA_URL": store.settings.metadata_url,
        "CIVICMESH_AUDIT_SINK": store.sink,
    }
    return _mesh.UvicornServer(factory, store.settings.home, env, workers=workers, timeout=60)


# -- data and floor -------------------------------------------------------------------------------


def build(home: Path, rows: int) -> Settings:
    settings = _mesh.mesh_settings(home)
    settings.ensure_dirs()
    if Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema().entry(PRODUCT) is None:
        from civicmesh.synthetic import generate
        from orchestration.build import run_build

        t0 = time.perf_counter()
        generate(settings.landing_dir, rows=rows, seed=42)
        report = run_build(settings, emit_line=lambda _line: None)
        if not report.success:
            raise SystemExit(f"build failed: {report.failed_steps}")
        print(f"generated and built {rows:,} service requests in {time.perf_counter() - t0:.0f} s")
    return settings


def floor(path: str, n: int) -> dict[str, Latency]:
    con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "1GB"})
    con.execute(f"CREATE TABLE hot AS SELECT * FROM read_parquet('{path}')")
    out = {}
    parquet = f"read_parquet('{path}')"
    for name, sql in (("a", FLOOR_A), ("b", FLOOR_B)):
        for label, src in (("parquet", parquet), ("memory", "hot")):
            statement = sql.format(src=src)
            samples = []
            for i in range(n):
                cursor = con.cursor()
                t0 = time.perf_counter()
                cursor.execute(statement, PARAMS[name](i)).fetchall()
                samples.append(time.perf_counter() - t0)
                cursor.close()
            out[f"{name}_{label}"] = latency(samples[n // 10 :])
    con.close()
    return out


@dataclass
class Baseline:
    """PostgreSQL's figures per query name: single-client latency, the server's CPU per query (ms)
    in that run, and req/s at 8 clients."""

    latency: dict[str, Latency]
    rps: dict[str, float]
    cpu_ms: dict[str, float]


def pg_baseline(dsn: str, n: int, seconds: float, server_pid: int, clients: int = 8) -> Baseline:
    """(a) and (b) on the indexed table as prepared statements: single-client latency and the CPU
    the server (`server_pid`'s process tree: the postmaster, its backends and background workers)
    spent per query, both after n // 10 warm-up queries; and queries/s with `clients` threads, one
    connection each."""
    import psycopg

    out = Baseline({}, {}, {})
    with psycopg.connect(dsn, autocommit=True) as pg:
        for name, sql in (("a", FLOOR_A), ("b", FLOOR_B)):
            statement = sql.format(src=PG_TABLE).replace("?", "%s")
            samples = []
            for i in range(n):
                if i == n // 10:
                    cpu_before = _mesh.cpu_seconds(server_pid)
                t0 = time.perf_counter()
                pg.execute(statement, PARAMS[name](i), prepare=True).fetchall()
                samples.append(time.perf_counter() - t0)
            out.cpu_ms[name] = (_mesh.cpu_seconds(server_pid) - cpu_before) * 1000 / (n - n // 10)
            out.latency[name] = latency(samples[n // 10 :])
            out.rps[name] = pg_rate(dsn, statement, PARAMS[name], clients, seconds)
    return out


def pg_rate(
    dsn: str, statement: str, params: Callable[[int], list[object]], clients: int, seconds: float
) -> float:
    """Queries/s of `clients` threads, each on its own connection, each query with its own bound
    value (thread k uses 10M * (k + 1) + j)."""
    import psycopg

    connections = [psycopg.connect(dsn, autocommit=True) for _ in range(clients)]
    done = [0] * clients
    deadline = time.perf_counter() + seconds

    def run(k: int) -> None:
        pg, i = connections[k], 10_000_000 * (k + 1)
        while time.perf_counter() < deadline:
            pg.execute(statement, params(i + done[k]), prepare=True).fetchall()
            done[k] += 1

    elapsed = _mesh.in_threads(run, clients)
    for connection in connections:
        connection.close()
    return sum(done) / elapsed


# -- the run --------------------------------------------------------------------------------------


def fmt(lat: Latency) -> str:
    return f"p50 {lat.p50:7.2f} ms  p95 {lat.p95:7.2f} ms"


def ratio(x: float, y: float) -> str:
    return f"{x / y:5.2f}x" if y else "   n/a"


def verdict(ok: bool) -> str:
    return "MET" if ok else "not met"


def lineage_backlog(settings: Settings) -> int:
    from lineage.recorder import LineageRecorder
    from lineage.transports import transports_from_settings

    outbox = LineageRecorder.from_settings(settings).outbox
    return sum(outbox.pending_count(t.name) for t in transports_from_settings(settings))


async def drain_lineage(settings: Settings, limit_s: float = 45.0) -> float:
    """Wait until the governed server's background delivery has caught up with the read events of
    the warm-up, so that backlog does not bleed into the latency phases (steady-state delivery of
    each measured request's own event still happens during them, as in production)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if await asyncio.to_thread(lineage_backlog, settings) == 0:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - t0


async def measure(
    stores: list[Store], servers: dict[str, _mesh.UvicornServer], token: str, n: int, seconds: float
) -> dict[str, object]:
    results: dict[str, object] = {}
    # Correctness first: governed and ungoverned return the same rows, governed ones masked.
    for mode, server in servers.items():
        conn = await Connection(server.port, token).open()
        data = check(*(await conn.post(body_for(QUERY_A, None, FAR_FUTURE))))
        nodes = data["data"]["publicWorks"]["serviceRequests"]["nodes"]
        gov = (data.get("extensions") or {}).get("governance", {}).get(PRODUCT, {})
        assert len(nodes) == 100 and {r["district"] for r in nodes} == {"D3"}, mode
        results[f"{mode}_masks"] = sorted(gov.get("maskedColumns", {}))
        results[f"{mode}_row_filter"] = gov.get("rowFilter")
        check(*(await conn.post(body_for(QUERY_B, None, FAR_FUTURE))))
        await conn.close()
    # Warm up every worker (hot snapshot load, parse/validation caches, response caches).
    for server in servers.values():
        for query in (QUERY_A, QUERY_B):
            await load(server.port, token, query, 8, 0.5, None)
            await load(server.port, token, query, 8, 1.0, 10_000_000)
    for server in servers.values():
        waited = await hot_copies_settled(server.port)
        print(f"hot copies loaded in every worker after {waited:.1f} s more")
    for server in servers.values():
        for query in (QUERY_A, QUERY_B):
            await load(server.port, token, query, 8, 0.5, 20_000_000)
            await load(server.port, token, query, 8, 0.3, None)
    results["lineage_drain_s"] = max([await drain_lineage(store.settings) for store in stores])
    # Single client, interleaved governed/ungoverned in rounds so machine load hits both alike.
    # The server's CPU (its process tree: workers, and their background recording and delivery)
    # is read around each run: per request, it is what serving one costs, whatever the wall clock.
    rounds = 4
    samples: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    seq = 1
    for _ in range(rounds):
        for mode, server in servers.items():
            for name, query, cached in (
                ("a", QUERY_A, False),
                ("b", QUERY_B, False),
                ("a_cached", QUERY_A, True),
                ("b_cached", QUERY_B, True),
            ):
                start = None if cached else seq
                seq += n
                cpu_before = server.cpu_seconds()
                got = await single_client(server.port, token, query, n // rounds, start)
                key = f"{mode}_{name}"
                cpu[key] = cpu.get(key, 0.0) + server.cpu_seconds() - cpu_before
                samples.setdefault(key, []).extend(got)
    for key, values in samples.items():
        results[key] = latency(values)
        results[f"{key}_cpu_ms"] = cpu[key] * 1000 / len(values)
    for mode, server in servers.items():
        for name, query, cached in (
            ("a", QUERY_A, False),
            ("b", QUERY_B, False),
            ("a_cached", QUERY_A, True),
            ("b_cached", QUERY_B, True),
        ):
            start = None if cached else 100_000_000 + seq
            seq += 1_000_000
            results[f"{mode}_{name}_rps"] = await load(server.port, token, query, 8, seconds, start)
    return results


def report(
    rows: int, workers: int, fl: dict[str, Latency], pg: Baseline, r: dict[str, object], load_before: str
) -> None:
    print(f"\n== gateway benchmark: {rows:,} service requests, as {USER} (scoped to D3) ==")
    print(f"uvicorn workers per server: {workers}; load average at start: {load_before}")
    print(f"lineage backlog of the warm-up delivered in {r['lineage_drain_s']:.1f} s before measuring")
    print(f"governed masks: {r['governed_masks']}  row filter: {r['governed_row_filter']}")
    print(f"ungoverned masks: {r['ungoverned_masks']}  row filter: {r['ungoverned_row_filter']}")
    print("\nfloor: DuckDB in-process, same SQL shape")
    for key, lat in fl.items():
        print(f"  {key:<12} {fmt(lat)}")
    indexes = " and ".join(PG_INDEXES)
    print(f"\nbaseline: PostgreSQL 15, indexes {indexes}, prepared statements")
    print("                                             server CPU/query   req/s at 8 clients")
    for name in ("a", "b"):
        cpu_ms, rps = pg.cpu_ms[name], pg.rps[name]
        print(f"  {name + '_pg':<12} {fmt(pg.latency[name])}   {cpu_ms:7.2f} ms   {rps:8.0f}")
    print("\nsingle client (HTTP, keep-alive)           server CPU/request   req/s at 8 clients")
    modes = [m for m in ("governed", "governed_pg", "ungoverned") if f"{m}_a" in r]
    for mode in modes:
        for name in ("a", "b", "a_cached", "b_cached"):
            got = r[f"{mode}_{name}"]
            assert isinstance(got, Latency)
            cpu_ms = float(r[f"{mode}_{name}_cpu_ms"])  # type: ignore[arg-type]
            print(f"  {mode:<10} {name:<9} {fmt(got)}   {cpu_ms:7.2f} ms   {r[f'{mode}_{name}_rps']:8.0f}")

    def p50(key: str) -> float:
        lat = r[key]
        assert isinstance(lat, Latency)
        return lat.p50

    print("\nratios (p50)")
    for name in ("a", "b"):
        g, u = p50(f"governed_{name}"), p50(f"ungoverned_{name}")
        print(
            f"  ({name}) gateway/floor: {ratio(g, fl[f'{name}_parquet'].p50)} vs Parquet, "
            f"{ratio(g, fl[f'{name}_memory'].p50)} vs in-memory, {ratio(g, pg.latency[name].p50)} vs "
            f"PostgreSQL;  governed/ungoverned: {ratio(g, u)}"
        )
    for name in ("a_cached", "b_cached"):
        g, u = p50(f"governed_{name}"), p50(f"ungoverned_{name}")
        print(f"  ({name}) governed/ungoverned: {ratio(g, u)}")
    if "governed_pg_a" in r:
        print("\nmetadata store: governed on PostgreSQL / governed on SQLite (p50, and req/s at 8 clients)")
        for name in ("a", "b", "a_cached", "b_cached"):
            pg_rps, lite_rps = r[f"governed_pg_{name}_rps"], r[f"governed_{name}_rps"]
            print(
                f"  ({name}) p50 {ratio(p50(f'governed_pg_{name}'), p50(f'governed_{name}'))}   "
                f"req/s {ratio(float(pg_rps), float(lite_rps))}"  # type: ignore[arg-type]
            )
    print("\ntargets")
    a, b = p50("governed_a"), p50("governed_b")
    over = max(a / p50("ungoverned_a"), b / p50("ungoverned_b")) - 1
    cached = max(p50("governed_a_cached"), p50("governed_b_cached"))
    rps = float(r["governed_a_cached_rps"])  # type: ignore[arg-type]
    print(f"  (a) uncached governed p50 <= {TARGETS['a_p50_ms']:.0f} ms: {a:6.2f} ms  {verdict(a <= 8)}")
    print(f"  (b) uncached governed p50 <= {TARGETS['b_p50_ms']:.0f} ms: {b:6.2f} ms  {verdict(b <= 20)}")
    print(f"  governance overhead <= 25% (worst of a, b): {over * 100:5.1f}%  {verdict(over <= 0.25)}")
    print(f"  cached governed p50 <= 2 ms (worst of a, b): {cached:6.2f} ms  {verdict(cached <= 2)}")
    print(f"  (a) cached at 8 clients >= {TARGET_RPS:.0f} req/s: {rps:6.0f}  {verdict(rps >= TARGET_RPS)}")
    report_pg_targets(pg, r)


def report_pg_targets(pg: Baseline, r: dict[str, object]) -> None:
    """Issue 16's targets against the indexed PostgreSQL baseline, for every governed server."""
    print("\ntargets against the indexed PostgreSQL (issue 16; uncached, unique bodies)")
    pg_a, pg_b, pg_a_rps = pg.latency["a"].p50, pg.latency["b"].p50, pg.rps["a"]
    for mode in (m for m in ("governed", "governed_pg") if f"{m}_a" in r):
        a, b = r[f"{mode}_a"], r[f"{mode}_b"]
        assert isinstance(a, Latency) and isinstance(b, Latency)
        rps = float(r[f"{mode}_a_rps"])  # type: ignore[arg-type]
        a_ok = a.p50 <= min(pg_a, PG_TARGETS["a_p50_ms"])
        print(
            f"  {mode}: (a) p50 {a.p50:6.2f} ms <= PostgreSQL's {pg_a:.2f} ms and <= "
            f"{PG_TARGETS['a_p50_ms']:.0f} ms: {verdict(a_ok)} (civicmesh/PostgreSQL {ratio(a.p50, pg_a)})"
        )
        print(
            f"  {mode}: (a) {rps:6.0f} req/s at 8 clients >= {PG_TARGETS['a_rps']:,.0f}: "
            f"{verdict(rps >= PG_TARGETS['a_rps'])} (civicmesh/PostgreSQL {ratio(rps, pg_a_rps)})"
        )
        cpu_ms = float(r[f"{mode}_a_cpu_ms"])  # type: ignore[arg-type]
        print(
            f"  {mode}: (a) server CPU {cpu_ms:6.2f} ms/request <= PostgreSQL's {pg.cpu_ms['a']:.2f} ms: "
            f"{verdict(cpu_ms <= pg.cpu_ms['a'])} (civicmesh/PostgreSQL {ratio(cpu_ms, pg.cpu_ms['a'])})"
        )
        speedup, wanted = pg_b / b.p50, PG_TARGETS["b_speedup"]
        print(
            f"  {mode}: (b) PostgreSQL/civicmesh p50 {speedup:5.2f}x (>= {wanted:.0f}x faster): "
            f"{verdict(speedup >= wanted)} (civicmesh/PostgreSQL {ratio(b.p50, pg_b)})"
        )


def metadata_stores(choice: str, settings: Settings, cluster: _pg.PgCluster) -> list[Store]:
    """The governed stores of the run: the home's SQLite store, a PostgreSQL copy of its catalog
    (each with its own checkpoint sink; the PostgreSQL one is new, as its database is), or both."""
    sqlite = Store("sqlite", settings, str(settings.audit_dir / "checkpoints.jsonl"))
    if choice == "sqlite":
        return [sqlite]
    url = cluster.create_database()
    pg_settings = replace(settings, metadata_url=url)
    _pg.copy_tables(settings.metadata_url, url)
    sink = settings.audit_dir / f"checkpoints-pg-{url.rsplit('/', 1)[-1]}.jsonl"
    pg = Store("postgresql", pg_settings, str(sink))
    print(f"metadata store: {choice} (PostgreSQL settings: {_pg.DURABLE}, sink {sink.name})")
    return [pg] if choice == "pg" else [sqlite, pg]


def verify_logs(stores: list[Store]) -> bool:
    """`civicmesh audit verify` of each governed store's log (its servers stopped: sealed at
    shutdown); prints each result and returns whether all are OK."""
    print("\naudit verify (after the servers sealed at shutdown)")
    results = []
    for store in stores:
        ok, output = _mesh.audit_verify(store.settings.home, store.settings.metadata_url, store.sink)
        results.append(ok)
        print(f"  {store.name}: {'OK' if ok else 'FAILED'}")
        print("\n".join(f"    {line}" for line in output.splitlines()))
    return all(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("-n", type=int, default=200, help="sequential requests per single-client case")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each 8-client run")
    _mesh.metadata_option(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = None if args.home else tempfile.mkdtemp(prefix="civicmesh-bench-gw-")
    home = args.home or Path(tmp)  # type: ignore[arg-type]
    servers: dict[str, _mesh.UvicornServer] = {}
    cluster = _pg.durable_cluster()
    stores: list[Store] = []
    verified = False
    try:
        settings = build(home.resolve(), args.rows)
        snap = Catalog(get_engine(settings.metadata_url), settings.home).entry(PRODUCT).current  # type: ignore[union-attr]
        assert snap is not None
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        parquet = Path(snap.path).resolve()
        fl = floor(str(parquet), args.n)
        dsn = _pg.conninfo(cluster, "baseline")
        cluster.create_database("baseline")
        loaded = _pg.load_parquet(dsn, PG_TABLE, parquet, PG_INDEXES)
        print(f"PostgreSQL baseline: {loaded:,} rows loaded and indexed")
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        pg = pg_baseline(dsn, args.n, args.seconds, postmaster)
        from gateway.auth import issue_token

        token = issue_token(settings, USER, ttl_hours=1)
        stores = metadata_stores(args.metadata, settings, cluster)
        servers["governed"] = start_server(stores[0], args.workers)
        if len(stores) == 2:
            servers["governed_pg"] = start_server(stores[1], args.workers)
        servers["ungoverned"] = start_server(stores[0], args.workers, governance_off=True)
        results = asyncio.run(measure(stores, servers, token, args.n, args.seconds))
        for server in servers.values():
            server.stop()
        report(snap.row_count, args.workers, fl, pg, results, load_before)
        verified = verify_logs(stores)
    finally:
        for server in servers.values():
            server.stop()
        cluster.destroy()
        for store in stores:
            if store.name == "postgresql":  # its database died with the cluster
                Path(store.sink).unlink(missing_ok=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_after}")
    if not verified:
        raise SystemExit("an access log did not verify (see above)")


if __name__ == "__main__":
    main()
