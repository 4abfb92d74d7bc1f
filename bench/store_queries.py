"""What the gateway's start-up asks the access log, on a long log: SQLite and PostgreSQL.

Fills an access log with `--records` records (chained, in commits of 2,000), then times each query a
gateway start (and each checkpoint) runs on it, median of `--repeat` runs, against the statement it
replaced, measured in the same run on the same store:
- the chain head (`AccessLog.head`: start-up's legacy-seal check and every checkpoint), baseline the
  former `SELECT seq ... ORDER BY seq DESC` without a LIMIT (PostgreSQL sent every seq over);
- "already sealed?" (`seal_legacy`: checkpoints and seals with limit 1), baseline every row of both;
- the newest policy load (`AccessLog.latest`, on the action index) and the grant records
  (`of_actions(approve, revoke)`): already indexed, shown for completeness.

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

from sqlalchemy import select  # noqa: E402

from meshcore.accesslog import AccessLog, AccessRecord, access_log_table  # noqa: E402
from meshcore.seals.signing import Signer  # noqa: E402
from meshcore.store import dispose_all, get_engine  # noqa: E402

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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="civicmesh-queries-") as tmp:
        measure("SQLite (WAL)", f"sqlite:///{Path(tmp) / 'metadata.db'}", args.records, args.repeat)
    if not args.no_postgres:
        from bench._pg import durable_cluster  # the tests' throwaway cluster

        cluster = durable_cluster()
        try:
            measure("PostgreSQL", cluster.create_database(), args.records, args.repeat)
        finally:
            cluster.destroy()
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
