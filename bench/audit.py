"""Access-log benchmark: what signing and checkpointing cost, and what the log costs a request.

1. Append throughput on a fresh SQLite (WAL) store, signed (an Ed25519 seal per commit) and
   unsigned: one thread appending one record at a time, and 8 threads sharing group commits
   (the number of commits is printed too).
2. Gateway p50, three real uvicorn servers on 127.0.0.1 (one child process and one home each,
   same small published product), queried alternately in rounds by one sequential client in this
   process, so machine noise hits all three:
   - "signed": the gateway as shipped — a seal per commit, and the sealer writing a checkpoint
     every `--checkpoint-every` records (100 by default, so many fall inside the run) to the
     fsynced file sink, plus the interval and shutdown ones;
   - "unsigned": the same gateway with its log's signer removed and its sealer stopped (the chain
     alone, as before Ed25519) — the baseline of the checkpointing target (<= 5 %);
   - "off": no access-log record at all (`_UnloggedLog` below), the baseline of the log's cost.
   Both switches are made by this script alone, in its own server processes; nothing in the
   gateway can turn signing, sealing or the log off.

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

from meshcore.audit.verify import verify_report

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from meshcore.accesslog import AccessLog, AccessRecord  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.seals.signing import Signer  # noqa: E402
from meshcore.settings import Settings  # noqa: E402
from meshcore.store import dispose_all, get_engine  # noqa: E402

TARGET_LOG = 0.10  # the whole access log vs none
TARGET_CHECKPOINTS = 0.05  # seals and checkpoints vs the unsigned chain
MODES = ("signed", "unsigned", "off")
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


def append_rate(home: Path, threads: int, per_thread: int, signed: bool) -> tuple[float, int]:
    """(records/s, commits) for `threads` threads each appending `per_thread` single records."""
    url = f"sqlite:///{home / f'log-{threads}-{signed}.db'}"
    log = AccessLog(get_engine(url), signer=Signer.generate() if signed else None).ensure_schema()
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
    assert verify_report(log).first_bad is None, "the chain must verify after the run"
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


def _serve(home: str, port: int, mode: str, ready: Any) -> None:
    """Child process: one uvicorn server, with signing or the log switched off as `mode` says."""
    import logging

    import uvicorn

    from civicmesh.asgi import create_app

    logging.disable(logging.WARNING)
    settings = Settings.for_home(Path(home))
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on", access_log=False)
    )

    def when_started() -> None:
        while not server.started:
            time.sleep(0.01)
        gateway = app.state.gateway
        if mode != "signed" and gateway.sealer is not None:  # unsigned: the chain alone
            gateway.sealer.close()
            gateway.sealer = None
            gateway.access_log.signer = None
        if mode == "off":
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

    from meshcore.catalog import Catalog
    from meshcore.snapshots import write_snapshot

    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t AS {SQL}")
        written = write_snapshot(con, "t", settings.snapshots_dir / PRODUCT.department / PRODUCT.product)
    finally:
        con.close()
    Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema().publish(PRODUCT, written)


def _start(root: Path, every: int) -> tuple[dict[str, tuple[int, Any]], dict[str, Settings]]:
    """One home and one server process per mode."""
    import os

    os.environ["CIVICMESH_AUDIT_CHECKPOINT_RECORDS"] = str(every)  # read by the children
    ctx = multiprocessing.get_context("spawn")
    servers, homes = {}, {}
    for mode in MODES:
        home = root / mode
        settings = homes[mode] = Settings.for_home(home)
        settings.ensure_dirs()
        _publish(settings)
        dispose_all()
        port, ready = _free_port(), ctx.Event()
        proc = ctx.Process(target=_serve, args=(str(home), port, mode, ready), daemon=True)
        proc.start()
        if not ready.wait(120):
            raise RuntimeError(f"server {mode} did not start")
        servers[mode] = (port, proc)
    return servers, homes


def _measure(clients: dict[str, Any], rounds: int, per_round: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {n: {"uncached": [], "cached": []} for n in clients}
    counter = 0
    cached_body = {"query": QUERY, "variables": {"t": FAR_FUTURE.isoformat()}}
    for client in clients.values():  # warm-up: schema, DuckDB pool, decision cache
        for _ in range(30):
            counter += 1
            variables = {"t": (FAR_FUTURE + timedelta(seconds=counter)).isoformat()}
            client.post("/graphql", json={"query": QUERY, "variables": variables}).raise_for_status()
        client.post("/graphql", json=cached_body).raise_for_status()
    for r in range(rounds):
        order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
        for name in order:
            for i in range(per_round):
                counter += 1
                uncached = i % 2 == 0
                variables = {"t": (FAR_FUTURE + timedelta(seconds=counter)).isoformat()}
                body = {"query": QUERY, "variables": variables} if uncached else cached_body
                started = time.perf_counter()
                response = clients[name].post("/graphql", json=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.json().get("errors"):
                    raise RuntimeError(f"bad response: {response.text[:300]}")
                samples[name]["uncached" if uncached else "cached"].append(elapsed)
    return samples


def gateway_p50(
    root: Path, rounds: int, per_round: int, every: int
) -> tuple[dict[str, dict[str, float]], int]:
    """p50 ms per mode and kind, and the number of checkpoints the signed server wrote."""
    import httpx

    from gateway.auth import issue_token

    servers, homes = _start(root, every)
    try:
        clients = {  # each home has its own JWT secret
            n: httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {issue_token(homes[n], 'dana', 2)}"},
                timeout=30,
            )
            for n, (port, _) in servers.items()
        }
        samples = _measure(clients, rounds, per_round)
        for client in clients.values():
            client.close()
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.join(30)
    signed = AccessLog.from_settings(homes["signed"])
    check = verify_report(signed)
    if not check.ok:
        raise RuntimeError(f"the signed server's log does not verify: {check.findings}")
    if AccessLog(get_engine(homes["off"].metadata_url)).head() > 1:  # only its policy record
        raise RuntimeError("the 'off' server logged requests")
    checkpoints = len(signed.checkpoints())
    p50 = {
        name: {kind: statistics.median(values) * 1000 for kind, values in by_kind.items()}
        for name, by_kind in samples.items()
    }
    return p50, checkpoints


def _verdict(label: str, on: float, base: float, target: float) -> bool:
    overhead = on / base - 1
    met = overhead <= target
    print(
        f"  {label:<30} {on:6.2f} ms vs {base:6.2f} ms   ratio {on / base:.3f} "
        f"(overhead {overhead:+.1%}, target <= {target:.0%}: {'met' if met else 'NOT met'})"
    )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per append run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="records per checkpoint (signed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-audit-") as tmp:
        home = Path(tmp)
        for signed in (True, False):
            one, commits_one = append_rate(home, 1, args.records, signed)
            eight, commits_eight = append_rate(home, 8, args.records // 8, signed)
            dispose_all()
            label = "signed  " if signed else "unsigned"
            total = args.records // 8 * 8
            print(f"access log append, {label}, 1 thread : {one:>9,.0f} records/s ({commits_one} commits)")
            print(
                f"access log append, {label}, 8 threads: {eight:>9,.0f} records/s ({commits_eight} commits "
                f"for {total} records: {total / max(commits_eight, 1):.1f} per commit)"
            )
        p50, checkpoints = gateway_p50(home / "mesh", args.rounds, args.per_round, args.checkpoint_every)
    n = args.rounds * args.per_round // 2
    print(
        f"gateway p50 over {n} requests per cell (dana, 20 rows, 2 masked PII columns, row scope D3); "
        f"the signed server wrote {checkpoints} checkpoints:"
    )
    verdicts = []
    for kind in ("uncached", "cached"):
        cell = p50["signed"][kind], p50["unsigned"][kind], p50["off"][kind]
        verdicts.append(_verdict(f"{kind}: signed vs unsigned", cell[0], cell[1], TARGET_CHECKPOINTS))
        verdicts.append(_verdict(f"{kind}: signed log vs no log", cell[0], cell[2], TARGET_LOG))
    print("targets met" if all(verdicts) else "target NOT met in every case (see above)")


if __name__ == "__main__":
    main()
