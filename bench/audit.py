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
(the response cache answers; the log write is then most of the work). After the servers stop
(the signed one seals at shutdown), `civicmesh audit verify` must find its log OK.

`--metadata sqlite|pg|both`: the metadata store of both parts: SQLite in WAL mode (default), a
PostgreSQL 15 server started for the run (bench/_pg.py: durable settings comparable to SQLite's
WAL + synchronous=NORMAL; a new database per append run and per server), or both in the same
run, one after the other (each with its own homes, so its own keys and checkpoint sinks), then
their figures side by side with the PostgreSQL/SQLite ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import _mesh  # noqa: E402
from meshcore.accesslog import AccessLog, AccessRecord  # noqa: E402
from meshcore.audit.verify import verify_report  # noqa: E402
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


def append_rate(url: str, threads: int, per_thread: int, signed: bool) -> tuple[float, int]:
    """(records/s, commits) for `threads` threads each appending `per_thread` single records into
    the empty store at `url`."""
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

    elapsed = _mesh.in_threads(worker, threads)
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


def _serve(home: str, url: str, port: int, mode: str, ready: Any) -> None:
    """Child process: one uvicorn server, with signing or the log switched off as `mode` says."""
    import logging

    import uvicorn

    from civicmesh.asgi import create_app

    logging.disable(logging.WARNING)
    settings = replace(Settings.for_home(Path(home)), metadata_url=url)
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


def _start(
    root: Path, every: int, new_url: Callable[[str], str]
) -> tuple[dict[str, tuple[int, Any]], dict[str, Settings]]:
    """One home, one store (`new_url(mode)`) and one server process per mode."""
    os.environ["CIVICMESH_AUDIT_CHECKPOINT_RECORDS"] = str(every)  # read by the children
    ctx = multiprocessing.get_context("spawn")
    servers, homes = {}, {}
    for mode in MODES:
        home = root / mode
        settings = homes[mode] = replace(Settings.for_home(home), metadata_url=new_url(mode))
        settings.ensure_dirs()
        _publish(settings)
        dispose_all()
        port, ready = _mesh.free_port(), ctx.Event()
        proc = ctx.Process(
            target=_serve, args=(str(home), settings.metadata_url, port, mode, ready), daemon=True
        )
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
    root: Path, new_url: Callable[[str], str], rounds: int, per_round: int, every: int
) -> tuple[dict[str, dict[str, float]], int]:
    """p50 ms per mode and kind, and the number of checkpoints the signed server wrote; raises
    RuntimeError if `civicmesh audit verify` does not find the signed server's log OK."""
    import httpx

    from gateway.auth import issue_token

    servers, homes = _start(root, every, new_url)
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
    signed = homes["signed"]
    ok, output = _mesh.audit_verify(
        signed.home, signed.metadata_url, str(signed.audit_dir / "checkpoints.jsonl")
    )
    print(f"civicmesh audit verify (signed server's log): {output.splitlines()[-1] if output else ''}")
    if not ok:
        raise RuntimeError(f"the signed server's log does not verify:\n{output}")
    if AccessLog(get_engine(homes["off"].metadata_url)).head() > 1:  # only its policy record
        raise RuntimeError("the 'off' server logged requests")
    checkpoints = len(AccessLog(get_engine(signed.metadata_url)).checkpoints())
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


def run(label: str, root: Path, new_url: Callable[[str], str], args: argparse.Namespace) -> dict[str, float]:
    """Both parts on one kind of store (`new_url(name)` makes an empty one); prints and returns
    the figures (records/s, ms, checkpoints) by name."""
    print(f"== metadata store: {label}")
    figures: dict[str, float] = {}
    for signed in (True, False):
        kind = "signed" if signed else "unsigned"
        one, commits_one = append_rate(new_url(f"log1{kind}"), 1, args.records, signed)
        eight, commits_eight = append_rate(new_url(f"log8{kind}"), 8, args.records // 8, signed)
        dispose_all()
        figures[f"append {kind} 1 thread (rec/s)"], figures[f"append {kind} 8 threads (rec/s)"] = one, eight
        total = args.records // 8 * 8
        print(f"access log append, {kind:<8}, 1 thread : {one:>9,.0f} records/s ({commits_one} commits)")
        print(
            f"access log append, {kind:<8}, 8 threads: {eight:>9,.0f} records/s ({commits_eight} commits "
            f"for {total} records: {total / max(commits_eight, 1):.1f} per commit)"
        )
    p50, checkpoints = gateway_p50(root, new_url, args.rounds, args.per_round, args.checkpoint_every)
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
        figures.update({f"gateway p50 {kind} {mode} (ms)": cell[i] for i, mode in enumerate(MODES)})
    print("targets met" if all(verdicts) else "target NOT met in every case (see above)")
    return figures


def side_by_side(sqlite: dict[str, float], pg: dict[str, float]) -> None:
    print("\n== SQLite vs PostgreSQL, same run")
    print(f"  {'figure':<40} {'SQLite':>10} {'PostgreSQL':>11}  PG/SQLite")
    for name, lite in sqlite.items():
        print(f"  {name:<40} {lite:>10,.2f} {pg[name]:>11,.2f}  {pg[name] / lite:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per append run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="records per checkpoint (signed)")
    _mesh.metadata_option(parser)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-audit-") as tmp:
        if args.metadata in ("sqlite", "both"):
            lite = Path(tmp) / "sqlite"
            lite.mkdir()
            figures["sqlite"] = run("SQLite (WAL)", lite / "mesh", lambda n: f"sqlite:///{lite / n}.db", args)
        if args.metadata in ("pg", "both"):
            from bench import _pg

            cluster = _pg.durable_cluster()
            try:
                label = f"PostgreSQL 15 {_pg.DURABLE}"
                figures["pg"] = run(
                    label, Path(tmp) / "pg" / "mesh", lambda _n: cluster.create_database(), args
                )
            finally:
                dispose_all()
                cluster.destroy()
    if len(figures) == 2:
        side_by_side(figures["sqlite"], figures["pg"])
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
