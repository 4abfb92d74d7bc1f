"""Delivery leases fenced by process identity, the bounded flush, and `civicmesh lineage status`."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from civicmesh.cli import main
from lineage import events
from lineage.lease import Holder, _start_ticks, holder_alive
from lineage.outbox import Outbox, cursor_table
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings


def _dead_holder() -> Holder:
    """The identity of a process that ran on this machine and was killed."""
    proc = subprocess.Popen(["sleep", "60"])
    holder = Holder(Holder.current().host, Holder.current().boot, proc.pid, _start_ticks(proc.pid) or "")
    proc.kill()
    proc.wait()
    return holder


def _hold(outbox: Outbox, transport: str, owner: str, until: datetime) -> None:
    """Write the lease as `owner`'s, whoever held it."""
    outbox.acquire(transport, "setup:x:1:1:x")  # creates the row if there is none
    with outbox.engine.begin() as conn:
        conn.execute(
            update(cursor_table)
            .where(cursor_table.c.transport == transport)
            .values(lease_owner=owner, lease_until=until)
        )


def _events(n: int) -> list:
    out: list = []
    while len(out) < n:
        out += events.ingest_events(
            events.new_run_id(), None, "/l/a.csv", "raw.a", 1, warehouse_path="/w.duckdb"
        )
    return out[:n]


def test_holder_identity_tells_live_dead_reused_and_foreign_processes_apart() -> None:
    me = Holder.current()
    assert Holder.parse(me.owner()) == me and me.alive() is True
    assert me.owner() != me.owner()  # two dispatchers of one process are told apart
    dead = _dead_holder()
    assert dead.alive() is False and holder_alive(dead.owner()) is False
    reused = Holder(me.host, me.boot, me.pid, str(int(me.start) + 1))  # same pid, another process
    assert reused.alive() is False
    assert Holder("elsewhere", me.boot, me.pid, me.start).alive() is None  # cannot be checked here
    assert holder_alive("oldhost:1234:abcd1234") is None  # the owner format before identities


def test_a_dead_local_holder_is_taken_over_at_once(outbox: Outbox) -> None:
    far = datetime.now(UTC) + timedelta(hours=1)
    _hold(outbox, "file", _dead_holder().owner(), far)
    assert outbox.acquire("file", Holder.current().owner())
    assert outbox.lease("file")[0] != _dead_holder().owner()


def test_a_live_or_foreign_holder_keeps_its_lease_until_it_runs_out(outbox: Outbox) -> None:
    me = Holder.current()
    far = datetime.now(UTC) + timedelta(hours=1)
    _hold(outbox, "file", me.owner(), far)  # alive (this process, another dispatcher)
    assert not outbox.acquire("file", me.owner())
    foreign = Holder("elsewhere", "b00t", 4242, "99").owner()
    _hold(outbox, "file", foreign, far)
    assert not outbox.acquire("file", me.owner())
    _hold(outbox, "file", foreign, datetime.now(UTC) - timedelta(seconds=1))  # not renewed in time
    assert outbox.acquire("file", me.owner())


def test_flush_never_waits_beyond_its_budget(settings: Settings, blackhole: str) -> None:
    settings.extra.update(lineage_transports="http", lineage_url=blackhole, lineage_timeout="60")
    recorder = LineageRecorder.from_settings(settings)
    recorder.record(_events(3))
    started = time.monotonic()
    assert recorder.flush(timeout=0.5) is False
    assert time.monotonic() - started < 5  # the send itself would block for 60 s
    assert recorder.outbox.pending_count("http") == 3  # kept for the next delivery
    recorder.stop()


def test_status_shows_pending_age_and_the_lease_holder(
    settings: Settings, outbox: Outbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    monkeypatch.setenv("CIVICMESH_LINEAGE_TRANSPORTS", "file")
    outbox.append(_events(2))
    dead = _dead_holder().owner()
    _hold(outbox, "file", dead, datetime.now(UTC) + timedelta(minutes=5))
    assert main(["lineage", "status", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["transports"]
    assert row["transport"] == "file" and row["pending"] == 2
    assert 0 <= row["oldest_pending_age_s"] < 120
    assert row["lease_holder"] == dead and row["holder_alive"] is False
    assert main(["lineage", "status"]) == 0
    text = capsys.readouterr().out
    assert "file" in text and "process gone" in text and " 2 " in text


def test_status_refuses_a_bad_transport_configuration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    monkeypatch.setenv("CIVICMESH_LINEAGE_TRANSPORTS", "http")
    monkeypatch.delenv("CIVICMESH_LINEAGE_URL", raising=False)
    assert main(["lineage", "status"]) == 1
    assert "CIVICMESH_LINEAGE_URL" in capsys.readouterr().err
