"""Access-log benchmark: records/s through `AccessLog.append`, and what the log costs a request.

1. Append throughput on a fresh SQLite (WAL) store: one thread appending one record at a time,
   and 8 threads sharing group commits (the number of commits is printed too).
2. Gateway p50 with the access log on vs off: two real uvicorn servers on 127.0.0.1 (one child
   process each, same small published mesh), queried alternately in rounds by one sequential
   client in this process, so machine noise hits both. "off" is made by this script alone: in its
   own server process it swaps the recorder's log for `_UnloggedLog` (below), which writes the
   lineage outbox rows in their own transaction and no access-log record. Nothing in the gateway
   can switch the log off: there is no flag, variable or setting for it.

Queries (dana, public_works supervisor scoped to D3, two masked PII columns): (a) 20 rows with a
distinct bound predicate per request (defeats the response cache), (c) the same body again
(the response cache answers; the log write is then most of the work).
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from civicmesh.accesslog import AccessLog, AccessRecord  # noqa: E402
from civicmesh.products import ColumnSpec, ProductSpec  # noqa: E402
from civicmesh.settings import Settings  # noqa: E402
from civicmesh.store import dispose_all, get_engine  # noqa: E402

TARGET_OVERHEAD = 0.10
PRODUCT = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests (benchmark)",
    key="request_id",
    scope_column="district",
    columns=(
        ColumnSpec("request_id", "varchar", "Request id"),
        ColumnSpec("opened_at", "timestamp", "Opened"),
        ColumnSpec("category", "varchar", "Category"),
        ColumnSpec("district", "varchar", "District"),
        ColumnSpec("requester_name", "varchar", "Who", ("pii",), "hash"),
        ColumnSpec("address", "varchar", "Where", ("pii",), "partial"),
    ),
)
SQL = """
SELECT printf('SR-%06d', i) AS request_id,
       TIMESTAMP '2026-01-01' + INTERVAL (i) MINUTE AS opened_at,
       ['pothole', 'graffiti', 'streetlight'][i % 3 + 1] AS category,
       'D' || (i % 9 + 1) AS district,
       'Person ' || i AS requester_name,
       i || ' Main Street' AS address
FROM range(20000) t(i)
"""
QUERY = (
    "query A($t: DateTime!) { publicWorks { serviceRequests(where: {openedAt: {lt: $t}}, "
    "orderBy: [{openedAt: DESC}], first: 20) { nodes { requestId openedAt category district "
    "requesterName address } } } }"
)
FAR_FUTURE = datetime(2100, 1, 1)


def _record(i: int) -> AccessRecord:
    return AccessRecord(
        request_id=f"bench-{i}",
        action="read",
        status=200,
        decision="allow",
        reason="dana holds role supervisor in public_works; PII columns masked",
        subject="dana",
        roles=["supervisor@public_works"],
        product=PRODUCT.name,
        snapshot_id="snap-1",
        columns_requested=["request_id", "district", "requester_name"],
        columns_returned=["request_id", "district", "requester_name"],
        columns_masked={"requester_name": "hash"},
        row_filter={"column": "district", "values": ["D3"]},
        rule="p, supervisor, public_works, **, read",
        policy_version="0123456789abcdef",
        rows=20,
        bytes=4096,
        latency_ms=3.2,
        client="127.0.0.1",
        operation_hash="0" * 64,
    )


# -- 1. append throughput -------------------------------------------------------------------------


def append_rate(home: Path, threads: int, per_thread: int) -> tuple[float, int]:
    """(records/s, commits) for `threads` threads each appending `per_thread` single records."""
    url = f"sqlite:///{home / f'log-{threads}.db'}"
    log = AccessLog(get_engine(url), checkpoint_key="bench-key").ensure_schema()
    commits = [0]
    write = log._write

    def counting(batches: Any) -> None:
        commits[0] += 1
        write(batches)

    log._write = counting  # type: ignore[method-assign]
    log.append([_record(0)])  # warm the pool
    commits[0] = 0

    def worker(n: int) -> None:
        for i in range(per_thread):
            log.append([_record(n * per_thread + i)])

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    assert log.verify() is None, "the chain must verify after the run"
    return threads * per_thread / elapsed, commits[0]


# -- 2. the gateway with the log on and off -------------------------------------------------------


class _UnloggedLog:
    """BENCHMARK ONLY: stands in for the AccessLog inside this script's own server process.

    Writes the caller's `also` rows (the lineage outbox) in their own transaction, so "off" keeps
    lineage recording and measures the access log alone. Never importable by the gateway."""

    def __init__(self, real: AccessLog) -> None:
        self.real = real

    def append(self, records: Any, also: Any = None) -> list[int]:
        if also is not None:
            with self.real.engine.begin() as conn:
                also(conn)
        return [0] * len(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _serve(home: str, port: int, log_on: bool, ready: Any) -> None:
    """Child process: one uvicorn server; with log_on=False the log is swapped out (see above)."""
    import logging

    import uvicorn

    from gateway.app import create_app

    logging.disable(logging.WARNING)
    settings = Settings(home=Path(home), metadata_url=f"sqlite:///{Path(home) / 'metadata.db'}")
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on", access_log=False)
    )

    def when_started() -> None:
        while not server.started:
            time.sleep(0.01)
        if not log_on:
            gateway = app.state.gateway
            gateway.recorder.access_log = _UnloggedLog(gateway.recorder.access_log)
        ready.set()

    threading.Thread(target=when_started, daemon=True).start()
    server.run()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _publish(settings: Settings) -> None:
    import duckdb

    from civicmesh.catalog import Catalog
    from civicmesh.snapshots import write_snapshot

    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {SQL}")
        written = write_snapshot(con, "t", settings.snapshots_dir / PRODUCT.department / PRODUCT.product)
    finally:
        con.close()
    Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema().publish(PRODUCT, written)


def gateway_p50(home: Path, rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    import httpx

    from gateway.auth import issue_token

    settings = Settings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}")
    settings.ensure_dirs()
    _publish(settings)
    token = issue_token(settings, "dana", 2)
    dispose_all()
    ctx = multiprocessing.get_context("spawn")
    servers = {}
    for name, on in (("on", True), ("off", False)):
        port, ready = _free_port(), ctx.Event()
        proc = ctx.Process(target=_serve, args=(str(home), port, on, ready), daemon=True)
        proc.start()
        if not ready.wait(60):
            raise RuntimeError(f"server {name} did not start")
        servers[name] = (port, proc)
    samples: dict[str, dict[str, list[float]]] = {n: {"uncached": [], "cached": []} for n in servers}
    counter = 0
    try:
        clients = {
            n: httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            for n, (port, _) in servers.items()
        }
        cached_body = {"query": QUERY, "variables": {"t": FAR_FUTURE.isoformat()}}
        for client in clients.values():  # warm-up: schema, DuckDB pool, decision cache
            for _ in range(30):
                counter += 1
                variables = {"t": (FAR_FUTURE + timedelta(seconds=counter)).isoformat()}
                client.post("/graphql", json={"query": QUERY, "variables": variables}).raise_for_status()
            client.post("/graphql", json=cached_body).raise_for_status()
        head_before = AccessLog(get_engine(settings.metadata_url)).head()
        for r in range(rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for name in order:
                client = clients[name]
                for i in range(per_round):
                    counter += 1
                    uncached = i % 2 == 0
                    variables = {"t": (FAR_FUTURE + timedelta(seconds=counter)).isoformat()}
                    body = {"query": QUERY, "variables": variables} if uncached else cached_body
                    started = time.perf_counter()
                    response = client.post("/graphql", json=body)
                    elapsed = time.perf_counter() - started
                    data = response.json()
                    if response.status_code != 200 or data.get("errors"):
                        raise RuntimeError(f"bad response: {response.text[:300]}")
                    samples[name]["uncached" if uncached else "cached"].append(elapsed)
        for client in clients.values():
            client.close()
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.join(10)
    log = AccessLog(get_engine(settings.metadata_url))
    logged = log.head() - head_before
    assert log.verify() is None
    expected = rounds * per_round  # only the "on" server's measured requests are logged
    if logged != expected:
        raise RuntimeError(f"expected {expected} logged requests, found {logged}")
    return {
        name: {kind: statistics.median(values) * 1000 for kind, values in by_kind.items()}
        for name, by_kind in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per append run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-audit-") as tmp:
        home = Path(tmp)
        one, commits_one = append_rate(home, 1, args.records)
        eight, commits_eight = append_rate(home, 8, args.records // 8)
        dispose_all()
        print(f"access log append, 1 thread : {one:>9,.0f} records/s ({commits_one} commits)")
        total = args.records // 8 * 8
        print(
            f"access log append, 8 threads: {eight:>9,.0f} records/s ({commits_eight} commits for "
            f"{total} records: {total / max(commits_eight, 1):.1f} per commit)"
        )
        p50 = gateway_p50(home / "mesh", args.rounds, args.per_round)
    n = args.rounds * args.per_round // 2
    print(f"gateway p50 over {n} requests per cell (dana, 20 rows, 2 masked PII columns, row scope D3):")
    verdicts = []
    for kind in ("uncached", "cached"):
        on, off = p50["on"][kind], p50["off"][kind]
        overhead = on / off - 1
        met = overhead <= TARGET_OVERHEAD
        verdicts.append(met)
        print(
            f"  {kind:<9} log on {on:6.2f} ms   log off {off:6.2f} ms   ratio {on / off:.3f} "
            f"(overhead {overhead:+.1%}, target <= {TARGET_OVERHEAD:.0%}: {'met' if met else 'NOT met'})"
        )
    print("target met" if all(verdicts) else "target NOT met in every case (see above)")


if __name__ == "__main__":
    main()
