"""Throughput of the lineage outbox path (imported by bench/lineage.py).

Measures, in a throw-away metadata store: building read events, serialising them, appending them to
the outbox (in build-sized batches, one per request, and one per request from many threads sharing
commits), and delivering them to the file transport.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineage import events
from lineage.recorder import LineageRecorder
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import dispose_all


@dataclass(frozen=True)
class _Decision:
    """A stand-in with Decision's fields (the lineage room may not import the policies room)."""

    allowed: bool = True
    action: str = "read"
    rule: str | None = "p, role:analyst, dept, read"
    reason: str = "ok"
    policy_version: str = "v1"
    masks: dict[str, str] = field(default_factory=lambda: {"c1": "hash"})
    row_filter: None = None


def _time(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def outbox_throughput(home: Path, n: int = 5000, threads: int = 16) -> dict[str, float]:
    settings = Settings(home=home, metadata_url=f"sqlite:///{home}/bench.db")
    recorder = LineageRecorder.from_settings(settings)
    spec = ProductSpec(
        "dept", "product", "internal", "o@x.org", "", tuple(ColumnSpec(f"c{i}", "varchar") for i in range(12))
    )
    built: list[Any] = []
    build = _time(
        lambda: built.extend(
            events.read_event(f"r{i}", "u", spec, "s1", ["c0", "c1", "c2"], _Decision(), 10) for i in range(n)
        )
    )
    serialise = _time(lambda: recorder.outbox.prepare(built))
    batched = _time(lambda: [recorder.record(built[i : i + 100]) for i in range(0, n, 100)])
    single = _time(lambda: [recorder.record(e) for e in built[: n // 5]])
    chunk = n // threads
    workers = [
        threading.Thread(
            target=lambda part=built[i * chunk : (i + 1) * chunk]: [recorder.record(e) for e in part]
        )
        for i in range(threads)
    ]
    commits = recorder._group.commits
    concurrent = _time(lambda: ([w.start() for w in workers], [w.join() for w in workers]))
    total = recorder.outbox.count()
    deliver = _time(lambda: recorder.flush(120))
    result = {
        "build_events_per_s": n / build,
        "serialise_events_per_s": n / serialise,
        "append_batch100_events_per_s": n / batched,
        "append_single_events_per_s": (n // 5) / single,
        f"append_single_{threads}_threads_events_per_s": chunk * threads / concurrent,
        f"commits_for_{chunk * threads}_concurrent_appends": recorder._group.commits - commits,
        "deliver_file_events_per_s": total / deliver,
    }
    recorder.stop()
    dispose_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(
            json.dumps({k: round(v) for k, v in outbox_throughput(Path(tmp), args.events).items()}, indent=2)
        )


if __name__ == "__main__":
    main()
