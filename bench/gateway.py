"""Gateway benchmark: raw DuckDB (floor) vs the governed gateway vs the same gateway ungoverned.

One run, one process tree, the same 1M-row service-requests snapshot:

  floor       DuckDB in-process on the snapshot (the Parquet file, and an in-memory copy of it)
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
(a small asyncio HTTP/1.1 client, cheaper than httpx so the client does not eat the server's CPU).

`--metadata pg` keeps the metadata store (catalog, access log, lineage outbox) on a PostgreSQL
server started for the run (bench/_pg.py); `--metadata both` adds a third server, `governed_pg`,
the governed gateway on PostgreSQL over the same home and snapshot, measured in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import duckdb  # noqa: E402

from bench import _mesh  # noqa: E402
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
    "SELECT category, count(*), CAST(avg(response_hours) AS DOUBLE) FROM {src} "
    "WHERE district = ? AND opened_at < ? GROUP BY 1 ORDER BY 1"
)
TARGETS = {"a_p50_ms": 8.0, "b_p50_ms": 20.0, "governance_overhead": 0.25, "cached_p50_ms": 2.0}
TARGET_RPS = 500.0


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


# -- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, settings: Settings, workers: int, governance_off: bool) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "CIVICMESH_HOME": str(settings.home),
            "CIVICMESH_METADATA_URL": settings.metadata_url,
        }
        env.pop("CIVICMESH_DEMO", None)
        factory = "bench._ungoverned:create_app" if governance_off else "civicmesh.asgi:create_app"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(command, env=env, cwd=settings.home, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if b"200" in s.recv(200):
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the uvicorn tree only
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


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
    for name, sql, params in (
        ("a", FLOOR_A, lambda i: ["D3", "pothole", unique_time(i)]),
        ("b", FLOOR_B, lambda i: ["D3", unique_time(i)]),
    ):
        for label, src in (("parquet", parquet), ("memory", "hot")):
            statement = sql.format(src=src)
            samples = []
            for i in range(n):
                cursor = con.cursor()
                t0 = time.perf_counter()
                cursor.execute(statement, params(i)).fetchall()
                samples.append(time.perf_counter() - t0)
                cursor.close()
            out[f"{name}_{label}"] = latency(samples[n // 10 :])
    con.close()
    return out


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
    stores: list[Settings], servers: dict[str, Server], token: str, n: int, seconds: float
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
    await asyncio.sleep(3)  # hot copies finish loading in the background
    for server in servers.values():
        for query in (QUERY_A, QUERY_B):
            await load(server.port, token, query, 8, 0.5, 20_000_000)
            await load(server.port, token, query, 8, 0.3, None)
    results["lineage_drain_s"] = max([await drain_lineage(store) for store in stores])
    # Single client, interleaved governed/ungoverned in rounds so machine load hits both alike.
    rounds = 4
    samples: dict[str, list[float]] = {}
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
                got = await single_client(server.port, token, query, n // rounds, start)
                samples.setdefault(f"{mode}_{name}", []).extend(got)
    for key, values in samples.items():
        results[key] = latency(values)
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


def report(rows: int, workers: int, fl: dict[str, Latency], r: dict[str, object], load_before: str) -> None:
    print(f"\n== gateway benchmark: {rows:,} service requests, as {USER} (scoped to D3) ==")
    print(f"uvicorn workers per server: {workers}; load average at start: {load_before}")
    print(f"lineage backlog of the warm-up delivered in {r['lineage_drain_s']:.1f} s before measuring")
    print(f"governed masks: {r['governed_masks']}  row filter: {r['governed_row_filter']}")
    print(f"ungoverned masks: {r['ungoverned_masks']}  row filter: {r['ungoverned_row_filter']}")
    print("\nfloor: DuckDB in-process, same SQL shape")
    for key, lat in fl.items():
        print(f"  {key:<12} {fmt(lat)}")
    print("\nsingle client (HTTP, keep-alive)            req/s at 8 clients")
    modes = [m for m in ("governed", "governed_pg", "ungoverned") if f"{m}_a" in r]
    for mode in modes:
        for name in ("a", "b", "a_cached", "b_cached"):
            lat = r[f"{mode}_{name}"]
            assert isinstance(lat, Latency)
            print(f"  {mode:<10} {name:<9} {fmt(lat)}   {r[f'{mode}_{name}_rps']:8.0f}")

    def p50(key: str) -> float:
        lat = r[key]
        assert isinstance(lat, Latency)
        return lat.p50

    print("\nratios (p50)")
    for name in ("a", "b"):
        g, u = p50(f"governed_{name}"), p50(f"ungoverned_{name}")
        print(
            f"  ({name}) gateway/floor: {ratio(g, fl[f'{name}_parquet'].p50)} vs Parquet, "
            f"{ratio(g, fl[f'{name}_memory'].p50)} vs in-memory;  governed/ungoverned: {ratio(g, u)}"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="reuse (or create) this mesh home instead of a temp one")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    parser.add_argument("-n", type=int, default=200, help="sequential requests per single-client case")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each 8-client run")
    parser.add_argument(
        "--metadata",
        choices=("sqlite", "pg", "both"),
        default="sqlite",
        help="the metadata store: SQLite (default), PostgreSQL, or both in the same run",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = None if args.home else tempfile.mkdtemp(prefix="civicmesh-bench-gw-")
    home = args.home or Path(tmp)  # type: ignore[arg-type]
    servers: dict[str, Server] = {}
    cluster = None
    try:
        settings = build(home.resolve(), args.rows)
        snap = Catalog(get_engine(settings.metadata_url), settings.home).entry(PRODUCT).current  # type: ignore[union-attr]
        assert snap is not None
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        fl = floor(str(Path(snap.path).resolve()), args.n)
        from gateway.auth import issue_token

        token = issue_token(settings, USER, ttl_hours=1)
        stores = [settings]
        if args.metadata != "sqlite":
            from bench import _pg

            cluster = _pg.durable_cluster()
            pg_settings = replace(settings, metadata_url=cluster.create_database())
            _pg.copy_tables(settings.metadata_url, pg_settings.metadata_url)
            stores = [pg_settings] if args.metadata == "pg" else [settings, pg_settings]
            print(f"metadata store: {args.metadata} (PostgreSQL settings: {_pg.DURABLE})")
        servers["governed"] = Server(stores[0], args.workers, governance_off=False)
        if len(stores) == 2:
            servers["governed_pg"] = Server(stores[1], args.workers, governance_off=False)
        servers["ungoverned"] = Server(stores[0], args.workers, governance_off=True)
        results = asyncio.run(measure(stores, servers, token, args.n, args.seconds))
        report(snap.row_count, args.workers, fl, results, load_before)
    finally:
        for server in servers.values():
            server.stop()
        if cluster is not None:
            cluster.destroy()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {load_after}")


if __name__ == "__main__":
    main()
