"""Storage per governed request: what recording a read leaves in the metadata store.

Each governed read commits one access-log record (hash-chained, sealed per commit) and one
OpenLineage read event in the lineage outbox, through the gateway's own `Recorder.commit` (group
commit with 8 concurrent requests). Every request is unique: its own request id, run id, columns,
row count and latency; callers and products rotate over the demo's personas and products.

Three stores, same requests, same run:
- "baseline": read events are kept forever (`CIVICMESH_LINEAGE_READ_RETENTION_DAYS=inf`), as
  before compaction existed;
- "compacted": retention 0, the dispatcher delivering to the file transport and compacting in the
  background as the gateway's does;
- "archived": as "compacted", plus the gateway's sealer (a checkpoint every 1,000 records) and
  `civicmesh audit archive --sealed` (`archive_sealed`) after every `--archive-every` requests, as
  an operator's cron would run it. In every arm the lineage event file rotates at 8 MiB into gzip
  files (all kept here, so the figure is every event delivered).
  Archive bytes (gzip JSON lines + manifests) are reported apart from the store.
A warm-up of `--warmup` requests fills each store first, so the figure is the steady state
(compaction and archiving free pages, later inserts reuse them). Printed: file growth per request
(SQLite file after a WAL checkpoint), live bytes per table per request, and each arm against the
baseline. Target: <= 1 KB per governed request in the store (issue 16).

    .venv/bin/python bench/storage.py --requests 100000
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import anyio  # noqa: E402

from gateway.recording import Recorder, operation_hash  # noqa: E402
from lineage.read_events import read_event_dict  # noqa: E402
from lineage.recorder import LineageRecorder  # noqa: E402
from meshcore.accesslog import AccessLog, AccessRecord  # noqa: E402
from meshcore.audit.archiving import archive_sealed  # noqa: E402
from meshcore.audit.sealing import Sealer  # noqa: E402
from meshcore.audit.verify import verify_report  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.settings import Settings  # noqa: E402
from meshcore.store import dispose_all  # noqa: E402
from policies.decision import Decision, RowFilter  # noqa: E402

TARGET_BYTES = 1024
CLIENTS = 8


def _spec(department: str, product: str, names: list[str]) -> ProductSpec:
    columns = tuple(
        ColumnSpec(
            name,
            "varchar",
            f"{name.replace('_', ' ').capitalize()} of the {product.replace('_', ' ')}, as recorded.",
            ("pii",) if name.startswith("requester") else (),
            "hash" if name.startswith("requester") else None,
        )
        for name in names
    )
    return ProductSpec(
        department=department,
        product=product,
        classification="internal",
        owner=f"{department}@city.example",
        description=f"{product} (benchmark)",
        key=names[0],
        scope_column="district" if "district" in names else None,
        columns=columns,
    )


PRODUCTS = (
    _spec(
        "public_works",
        "service_requests",
        [
            "request_id",
            "opened_at",
            "closed_at",
            "category",
            "status",
            "priority",
            "channel",
            "district",
            "address",
            "latitude",
            "longitude",
            "requester_name",
            "requester_email",
            "requester_phone",
            "response_hours",
            "is_open",
        ],
    ),
    _spec("transportation", "traffic_counts", ["site_id", "counted_at", "direction", "vehicles", "district"]),
    _spec("environment", "air_quality", ["station_id", "measured_at", "pm25", "no2", "o3", "district"]),
)
CALLERS = (
    ("dana", "supervisor", "public_works"),
    ("bob", "analyst", "transportation"),
    ("erin", "analyst", "finance"),
)


def _request(rng: random.Random) -> tuple[list[AccessRecord], list[dict[str, Any]]]:
    """One governed read: its access-log record and its lineage read event (unique values)."""
    subject, role, department = rng.choice(CALLERS)
    spec = rng.choice(PRODUCTS)
    names = [c.name for c in spec.columns]
    columns = sorted(rng.sample(names, rng.randint(3, len(names))), key=names.index)
    masks = {c: "hash" for c in columns if c.startswith("requester")}
    scoped = subject == "dana" and spec.scope_column is not None
    row_filter = RowFilter("district", ("D3",)) if scoped else None
    decision = Decision(
        allowed=True,
        subject=subject,
        product=spec.name,
        action="read",
        rule=f"p, {role}, {spec.department}, **, read",
        reason=f"{subject} holds role {role} in {spec.department}, which may read {spec.name}",
        policy_version="c97b9a7cd087c9b5",
        masks=masks,
        row_filter=row_filter,
        source="policy.csv:15",
    )
    request_id = uuid.uuid4().hex
    rows = rng.randint(0, 100)
    snapshot_id = f"{spec.name}@20261130T082237229185Z-97af8c34"
    record = AccessRecord(
        request_id=request_id,
        action="read",
        status=200,
        decision="allow",
        reason=decision.reason,
        subject=subject,
        roles=[f"{role}@{department}"],
        product=spec.name,
        snapshot_id=snapshot_id,
        columns_requested=columns,
        columns_returned=columns,
        columns_masked=masks,
        row_filter={"column": "district", "values": ["D3"]} if scoped else None,
        rule=decision.rule,
        policy_version=decision.policy_version,
        rows=rows,
        bytes=rng.randint(200, 40000),
        latency_ms=rng.uniform(1, 20),
        client="127.0.0.1",
        operation_hash=operation_hash(f"query Q{rng.randint(0, 10**9)} {{ x }}"),
    )
    event = read_event_dict(request_id, subject, spec, snapshot_id, columns, decision, rows)
    return [record], [event]


def _settings(home: Path, retention: str) -> Settings:
    extra = {
        "lineage_read_retention_days": retention,
        "lineage_compact_interval_s": "1",
        "lineage_file_max_mb": "8",
        "lineage_file_keep": "all",  # every rotated file counts in the figure
    }
    return Settings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}", extra=extra)


async def _record(recorder: Recorder, count: int, seed: int) -> None:
    rng = random.Random(seed)
    todo = iter(range(count))

    async def client() -> None:
        for _ in todo:
            records, events = _request(rng)
            if not await recorder.commit(records, events):
                raise SystemExit("the access log refused a write")

    async with anyio.create_task_group() as group:
        for _ in range(CLIENTS):
            group.start_soon(client)


def _file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _live_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages each table (with its indexes) uses: the file minus its free pages."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT tbl_name, name FROM sqlite_schema WHERE tbl_name IS NOT NULL").fetchall()
        owner = {name: table for table, name in rows}
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            sizes[table] = sizes.get(table, 0) + int(size)
    return sizes


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class _Archiver:
    """The gateway's sealer and, between chunks of requests, `civicmesh audit archive --sealed`."""

    def __init__(self, access_log: AccessLog) -> None:
        self.log = access_log
        self.sealer = Sealer(access_log, every=1000).start()
        self.seconds = 0.0

    def __call__(self) -> None:
        started = time.perf_counter()
        self.sealer.checkpoint("interval")
        archive_sealed(self.log)
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        self.sealer.close()


def _requests(recorder: Recorder, count: int, seed: int, every: int, between: Any) -> float:
    """Record `count` requests in chunks of `every`, calling `between()` after each; returns the
    seconds spent recording."""
    elapsed, done = 0.0, 0
    while done < count:
        chunk = min(every, count - done)
        started = time.perf_counter()
        anyio.run(_record, recorder, chunk, seed * 1_000_003 + done)
        elapsed += time.perf_counter() - started
        done += chunk
        if between is not None:
            between()
    return elapsed


def run_arm(
    root: Path, name: str, retention: str, warmup: int, requests: int, archive_every: int | None
) -> dict[str, Any]:
    home = root / name
    settings = _settings(home, retention)
    access_log = AccessLog.from_settings(settings)
    archiver = _Archiver(access_log) if archive_every else None
    lineage = LineageRecorder.from_settings(settings)
    lineage.start()
    recorder = Recorder(access_log, lineage)
    db = home / "metadata.db"
    every = archive_every or max(requests, warmup, 1)
    try:
        _requests(recorder, warmup, 1, every, archiver)
        lineage.flush(timeout=120)
        _settle(lineage)
        before, live_before = _file_bytes(db), _live_bytes(db)
        archived_before = _folder_bytes(settings.audit_archive_dir)
        elapsed = _requests(recorder, requests, 2, every, archiver)
        lineage.flush(timeout=300)
        _settle(lineage)
        after, live_after = _file_bytes(db), _live_bytes(db)
    finally:
        if archiver is not None:
            archiver.close()
        lineage.stop()
        dispose_all()
    growth = {t: (live_after.get(t, 0) - live_before.get(t, 0)) / requests for t in live_after}
    return {
        "file": (after - before) / requests,
        "live": growth,
        "rate": requests / elapsed,
        "events_file": _folder_bytes(home / "lineage"),
        "archive": (_folder_bytes(settings.audit_archive_dir) - archived_before) / requests,
        "archive_seconds": archiver.seconds if archiver else 0.0,
        "verified": verify_report(access_log).ok if archiver else None,
    }


def _settle(lineage: LineageRecorder) -> None:
    """Let a compaction pass run after the last delivery (the dispatcher's own, when it has one)."""
    compact = getattr(lineage.dispatcher, "compact", None)
    if compact is not None:
        compact(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=20_000)
    parser.add_argument("--keep", help="make the stores in this (new) folder and keep them")
    parser.add_argument("--archive-every", type=int, default=10_000, help="requests between archive runs")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    results = {}
    arms = (("baseline", "inf", None), ("compacted", "0", None), ("archived", "0", args.archive_every))
    with tempfile.TemporaryDirectory(prefix="civicmesh-storage-") as tmp:
        root = Path(args.keep or tmp)
        for name, retention, archive_every in arms:
            results[name] = r = run_arm(root, name, retention, args.warmup, args.requests, archive_every)
            _print_arm(name, retention, args.requests, r)
    base = results["baseline"]["file"]
    for name in ("compacted", "archived"):
        size = results[name]["file"]
        print(
            f"\n{name} / baseline: {size / base:.3f}  ({size:.0f} vs {base:.0f} bytes per governed request)"
        )
    final = results["archived"]["file"]
    verdict = "met" if final <= TARGET_BYTES else "NOT met"
    print(f"target <= {TARGET_BYTES} bytes per governed request in the store (archived): {verdict}")
    print(f"load average at end: {os.getloadavg()}")
    return 0


def _print_arm(name: str, retention: str, requests: int, r: dict[str, Any]) -> None:
    print(f"\n{name} (read-event retention {retention} days), {requests} requests")
    print(f"  recorded at {r['rate']:.0f} requests/s (8 concurrent, group commit)")
    print(f"  metadata store growth: {r['file']:8.0f} bytes/request")
    for table, size in sorted(r["live"].items(), key=lambda i: -i[1]):
        if abs(size) >= 1:
            print(f"    {table:<24} {size:8.0f} bytes/request (live pages)")
    print(f"  lineage event files (rotated, gzipped at 8 MiB): {r['events_file'] / 1e6:.1f} MB in all")
    if r["verified"] is not None:
        print(f"  access-log archive (gzip, outside the store): {r['archive']:8.0f} bytes/request")
        print(f"  archiving (seal + verify + write + delete): {r['archive_seconds']:.1f} s in all")
        print(f"  audit verify over archive + store: {'OK' if r['verified'] else 'BAD'}")


if __name__ == "__main__":
    raise SystemExit(main())
