"""What the gateway's start-up asks the access log, on a long log: SQLite and PostgreSQL.

Fills an access log with `--records` records (chained, in commits of 2,000), then times each query a
gateway start (and each checkpoint) runs on it, median of `--repeat` runs, against the statement it
replaced, measured in the same run on the same store:
- the chain head (`AccessLog.head`: start-up's legacy-seal check and every checkpoint), baseline the
  former `SELECT seq ... ORDER BY seq DESC` without a LIMIT (PostgreSQL sent every seq over);
- "already sealed?" (`seal_legacy`: checkpoints and seals with limit 1), baseline every row of both;
- the newest policy load (`AccessLog.latest`, on the action index) and the grant records
  (`of_actions(approve, revoke)`): already indexed, shown for completeness;
- on a lineage outbox of `--events` read events all younger than the retention (a full window):
  the bound of a compaction pass (`lineage.outbox.recorded_before`, run by every worker's first pass
  at start and every 5 minutes), baseline the former `max(seq) WHERE created_at < cutoff`.

    .venv/bin/python bench/store_queries.py --records 300000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from datetime import UTC, datetime, timedelta  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from lineage.events import new_run_id, read_event_dict  # noqa: E402
from lineage.outbox import Outbox, outbox_table, recorded_before  # noqa: E402
from meshcore.accesslog import AccessLog, AccessRecord, access_log_table  # noqa: E402
from meshcore.products import ProductSpec  # noqa: E402
from meshcore.seals.signing import Signer  # noqa: E402
from meshcore.store import dispose_all, get_engine  # noqa: E402
from policies.decision import Decision  # noqa: E402

BATCH = 2000


def _fill(log: AccessLog, records: int) -> None:
    for start in range(0, records, BATCH):
        log.append(
            [
                AccessRecord(
                    request_id=f"r{i}",
                    action="read" if i % 500 else "policy_version",
                    status=200,
                    decision="allow",
                    subject="dana",
                    product="public_works.service_requests",
                    columns_returned=["request_id", "district"],
                    rows=i % 100,
                )
                for i in range(start, min(records, start + BATCH))
            ]
        )


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _old_head(log: AccessLog) -> int:
    with log.engine.connect() as conn:
        row = conn.execute(select(access_log_table.c.seq).order_by(access_log_table.c.seq.desc())).first()
    return int(row.seq) if row else 0


def measure(name: str, url: str, records: int, repeat: int) -> None:
    log = AccessLog(get_engine(url), signer=Signer.generate()).ensure_schema()
    started = time.perf_counter()
    _fill(log, records)
    print(f"\n{name}: {records} records written in {time.perf_counter() - started:.1f} s")
    cases = [
        ("chain head", lambda: log.head(), lambda: _old_head(log)),
        (
            "already sealed?",
            lambda: log.checkpoints(limit=1) or log.seals(limit=1),
            lambda: log.checkpoints() or log.seals(),
        ),
    ]
    for label, new, old in cases:
        assert bool(new()) == bool(old())
        now, before = _median_ms(new, repeat), _median_ms(old, repeat)
        print(f"  {label:<18} {now:8.2f} ms   baseline {before:8.2f} ms   ratio {now / before:.3f}")
    with log.engine.connect() as conn:
        latest = _median_ms(lambda: log.latest(conn, "policy_version"), repeat)
    grants = _median_ms(lambda: log.of_actions(("approve", "revoke")), repeat)
    print(f"  {'newest policy load':<18} {latest:8.2f} ms   grant records {grants:.2f} ms (indexed)")
    dispose_all()


def measure_outbox(name: str, url: str, count: int, repeat: int) -> None:
    outbox = Outbox(get_engine(url)).ensure_schema()
    spec = ProductSpec("public_works", "service_requests", "internal", "alice@city.example", "Requests.", ())
    decision = Decision(True, "dana", spec.name, "read", "p, x", "because", "v1")
    started = time.perf_counter()
    for begin in range(0, count, BATCH):
        outbox.append(
            [
                read_event_dict(new_run_id(), "dana", spec, "snap-1", ["request_id"], decision, i % 100)
                for i in range(begin, min(count, begin + BATCH))
            ]
        )
    print(f"  outbox: {count} read events written in {time.perf_counter() - started:.1f} s")
    cutoff = datetime.now(UTC) - timedelta(days=7)  # the default retention: nothing is that old

    def old() -> int:
        with outbox.engine.connect() as conn:
            query = select(func.max(outbox_table.c.seq)).where(outbox_table.c.created_at < cutoff)
            return int(conn.execute(query).scalar() or 0)

    def new() -> int:
        with outbox.engine.connect() as conn:
            return recorded_before(conn, cutoff)

    assert new() == old() == 0
    now, before = _median_ms(new, repeat), _median_ms(old, repeat)
    label = "compaction bound"
    print(f"  {label:<18} {now:8.2f} ms   baseline {before:8.2f} ms   ratio {now / before:.3f}")
    dispose_all()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--events", type=int, default=100_000, help="lineage read events in the outbox")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="civicmesh-queries-") as tmp:
        measure("SQLite (WAL)", f"sqlite:///{Path(tmp) / 'metadata.db'}", args.records, args.repeat)
        measure_outbox("SQLite (WAL)", f"sqlite:///{Path(tmp) / 'metadata.db'}", args.events, args.repeat)
    if not args.no_postgres:
        from bench._pg import durable_cluster  # the tests' throwaway cluster

        cluster = durable_cluster()
        try:
            url = cluster.create_database()
            measure("PostgreSQL", url, args.records, args.repeat)
            measure_outbox("PostgreSQL", url, args.events, args.repeat)
        finally:
            cluster.destroy()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
