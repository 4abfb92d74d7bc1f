"""The outbox is durable, keeps order, tracks delivery per transport and never loses an event."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from lineage import events
from lineage.outbox import Outbox, delivery_table
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine

if TYPE_CHECKING:
    from tests.pg import PgCluster


def _run_events(n_runs: int = 3) -> list:
    out = []
    for i in range(n_runs):
        out += events.ingest_events(
            events.new_run_id(), None, f"/l/{i}.csv", f"raw.t{i}", i, warehouse_path="/w.duckdb"
        )
    return out


def test_appended_events_are_pending_until_delivered(outbox: Outbox) -> None:
    uids = outbox.append(_run_events(3))
    assert len(uids) == 6 and len(set(uids)) == 6
    pending = outbox.pending("file", limit=100)
    assert [p.event_uid for p in pending] == uids
    assert [p.seq for p in pending] == sorted(p.seq for p in pending)
    outbox.mark_delivered("file", [p.seq for p in pending[:2]])
    assert [p.event_uid for p in outbox.pending("file")] == uids[2:]
    # delivery is per transport: http has seen nothing yet
    assert outbox.pending_count("http") == 6
    outbox.mark_delivered("file", [p.seq for p in pending[2:]])
    assert outbox.pending("file") == [] and outbox.count() == 6


def test_events_survive_a_new_engine(settings: Settings) -> None:
    first = Outbox(get_engine(settings.metadata_url)).ensure_schema()
    uids = first.append(_run_events(2))
    dispose_all()  # as if the process had ended
    second = Outbox(get_engine(settings.metadata_url)).ensure_schema()
    assert [p.event_uid for p in second.pending("file")] == uids
    dispose_all()


def test_append_in_the_callers_transaction_commits_or_rolls_back_with_it(outbox: Outbox) -> None:
    engine = outbox.engine
    with pytest.raises(RuntimeError), engine.begin() as conn:
        outbox.append(_run_events(1), connection=conn)
        raise RuntimeError("the access-log write failed")
    assert outbox.count() == 0
    with engine.begin() as conn:
        outbox.append(_run_events(1), connection=conn)
    assert outbox.count() == 2


def test_malformed_events_are_refused_at_append(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="RunEvent"):
        outbox.append([{"eventType": "START"}])
    assert outbox.count() == 0


def test_delivered_rows_are_pruned_behind_the_floor(outbox: Outbox) -> None:
    # On PostgreSQL the floor waits until rows are older than the visibility lag (a lower seq may
    # still commit late); here that lag is zero, so pruning is immediate on both backends.
    outbox = Outbox(outbox.engine, visibility_lag_s=0.0)
    outbox.append(_run_events(5))
    pending = outbox.pending("file")
    outbox.mark_delivered("file", [p.seq for p in pending[5:]])  # out of order: floor cannot move yet
    with outbox.engine.connect() as conn:
        assert len(conn.execute(select(delivery_table)).all()) == 5
    outbox.mark_delivered("file", [p.seq for p in pending[:5]])
    with outbox.engine.connect() as conn:
        assert conn.execute(select(delivery_table)).all() == []  # all implied by the floor
    assert outbox.pending("file") == []
    outbox.mark_delivered("file", [pending[0].seq])  # a late duplicate acknowledgement is harmless
    assert outbox.pending("file") == []


def test_concurrent_records_share_commits_and_lose_nothing(settings: Settings, tmp_path: Path) -> None:
    recorder = LineageRecorder.from_settings(settings)
    uids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            got = recorder.record(_run_events(1))
            with lock:
                uids.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(uids) == len(set(uids)) == 8 * 25 * 2
    assert recorder.outbox.count() == len(uids)
    assert recorder._group.commits <= 8 * 25  # some appends shared a transaction
    assert recorder.flush(timeout=10)
    lines = (tmp_path / "lineage" / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(uids)
    dispose_all()


def test_events_recorded_before_a_hard_crash_are_delivered_by_the_next_process(settings: Settings) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from meshcore.settings import Settings
        from pathlib import Path
        from lineage import events
        from lineage.recorder import LineageRecorder

        settings = Settings(home=Path({str(settings.home)!r}), metadata_url={settings.metadata_url!r})
        recorder = LineageRecorder.from_settings(settings)  # dispatcher not started: nothing delivered
        run = events.new_run_id()
        uids = recorder.record(events.ingest_events(run, None, "/l/a.csv", "raw.a", 1, warehouse_path="/w"))
        print(",".join(uids), flush=True)
        os._exit(9)  # no cleanup, no atexit, no flush: as if killed
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    uids = done.stdout.strip().split(",")
    recorder = LineageRecorder.from_settings(settings)
    assert [e.event_uid for e in recorder.outbox.pending("file")] == uids
    assert recorder.flush(timeout=5)
    assert len((settings.lineage_dir / "events.jsonl").read_text().splitlines()) == 2
    recorder.stop()
    dispose_all()


def test_shared_recorder_is_one_per_store(settings: Settings, tmp_path: Path) -> None:
    first = LineageRecorder.shared(settings)
    assert LineageRecorder.shared(settings) is first
    other = Settings(home=tmp_path / "b", metadata_url=f"sqlite:///{tmp_path}/b.db")
    assert LineageRecorder.shared(other) is not first
    dispose_all()


@pytest.fixture
def pg_outbox(postgres: PgCluster) -> Iterator[Outbox]:
    """An outbox on PostgreSQL with its default visibility lag (300 s)."""
    with postgres.scratch_schema() as url:
        yield Outbox(get_engine(url)).ensure_schema()


def test_an_event_committed_late_is_delivered_when_a_later_one_carries_an_older_time(
    pg_outbox: Outbox,
) -> None:
    """PostgreSQL: a transaction holds a seq while a later seq commits, written by a process whose
    clock runs 10 minutes behind (beyond the visibility lag). The floor must not pass the open
    transaction's seq: once it commits, that event is still delivered."""
    outbox = pg_outbox
    with outbox.engine.connect() as late:
        with late.begin():
            [uid] = outbox.append(_run_events(1)[:1], connection=late)  # still open
            rows = outbox.prepare(_run_events(1)[:1])
            rows[0]["created_at"] -= timedelta(minutes=10)  # the slow clock
            outbox.write(rows)
            outbox.mark_delivered("file", [e.seq for e in outbox.pending("file")])
        assert [e.event_uid for e in outbox.pending("file")] == [uid]


def test_an_event_held_open_past_the_visibility_lag_is_delivered_once_committed(
    pg_outbox: Outbox,
) -> None:
    """PostgreSQL: a transaction inserts an event and stays open beyond the visibility lag (a commit
    stalled on synchronous replication, a caller's long transaction with `connection=`) while a
    later seq commits and is delivered. The floor must not pass the open transaction's seq: a row
    is dated when it is inserted, not when it commits, so its age alone says nothing about whether
    a lower seq is still in flight. The lag is 0.5 s here; each wait only has to outlast it."""
    outbox = Outbox(pg_outbox.engine, visibility_lag_s=0.5)
    with outbox.engine.connect() as held:
        with held.begin():
            [uid] = outbox.append(_run_events(1)[:1], connection=held)
            time.sleep(0.6)  # held open past the lag
            [later] = outbox.append(_run_events(1)[:1])
            time.sleep(0.6)  # the later event is older than the lag too
            assert [e.event_uid for e in outbox.pending("file")] == [later]
            outbox.mark_delivered("file", [e.seq for e in outbox.pending("file")])
        assert [e.event_uid for e in outbox.pending("file")] == [uid]


def test_the_floor_passes_delivered_events_older_than_the_lag_when_no_writer_is_open(
    pg_outbox: Outbox,
) -> None:
    """PostgreSQL: the in-flight writer bound does not freeze the floor: with no transaction writing
    to the outbox, delivered events older than the lag (0.5 s) are passed and their rows pruned."""
    outbox = Outbox(pg_outbox.engine, visibility_lag_s=0.5)
    outbox.append(_run_events(1))
    time.sleep(0.6)
    seqs = [e.seq for e in outbox.pending("file")]
    outbox.mark_delivered("file", seqs)
    with outbox.engine.connect() as conn:
        assert outbox._floor(conn, "file") == max(seqs)
        assert conn.execute(select(delivery_table.c.seq)).all() == []
