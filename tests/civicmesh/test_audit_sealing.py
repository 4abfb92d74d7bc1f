"""When checkpoints are written (count, interval, shutdown), by several writers into one chain, and
how a log written before Ed25519 signing is sealed (or refused)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import resource
import signal
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert

from meshcore.accesslog import AccessLog, AccessLogUnavailable, AccessRecord
from meshcore.audit.sealing import Sealer, SealRefused, open_log
from meshcore.audit.verify import verify_report
from meshcore.seals.checkpoints import Checkpoint
from meshcore.seals.sinks import SinkError
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine


def _record(i: int) -> AccessRecord:
    return AccessRecord(request_id=f"r{i}", action="read", status=200, subject="bob", rows=i)


def _sink(settings: Settings) -> list[Checkpoint]:
    path = Path(settings.audit_sink)
    return (
        [Checkpoint.from_dict(json.loads(line)) for line in path.read_text().splitlines()]
        if path.exists()
        else []
    )


def _until(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_checkpoints_at_the_count_the_interval_and_shutdown(settings: Settings) -> None:
    log = open_log(settings)
    sealer = Sealer(log, every=10, interval_s=3600).start()
    try:
        for i in range(9):
            log.append([_record(i)])
        time.sleep(0.2)
        assert _sink(settings) == []  # 9 records: below the count
        log.append([_record(9)])  # the 10th wakes the sealer
        _until(lambda: len(log.checkpoints()) == 1)  # in the sink, then copied into the store
        for i in range(10, 20):
            log.append([_record(i)])
        _until(lambda: [c["seq"] for c in log.checkpoints()] == [10, 20])
        assert [cp.reason for cp in _sink(settings)] == ["count", "count"]
        for i in range(20, 25):
            log.append([_record(i)])  # 5 more: below the count
    finally:
        sealer.close()
    last = _sink(settings)[-1]
    assert (last.reason, last.seq) == ("shutdown", 25)
    assert verify_report(log).unsealed == 0

    sealer = Sealer(log, every=1000, interval_s=0.05).start()
    try:
        log.append([_record(26)])
        _until(lambda: _sink(settings)[-1].seq == 26)
        assert _sink(settings)[-1].reason == "interval"
    finally:
        sealer.close()
    assert _sink(settings)[-1].seq == 26  # nothing new at shutdown: no empty checkpoint
    chain = _sink(settings)
    assert [cp.index for cp in chain] == list(range(1, len(chain) + 1))
    assert all(b.prev == a.digest() and b.first_seq == a.seq + 1 for a, b in itertools.pairwise(chain))


def test_two_writers_seal_one_chain(settings: Settings) -> None:
    """Two processes (here: two logs with their own sealers) share the store and the sink."""
    logs = [open_log(settings), open_log(settings)]
    sealers = [Sealer(log, every=7) for log in logs]

    def work(n: int) -> None:
        for i in range(40):
            logs[n].append([_record(i)])
            if i % 5 == 0:
                sealers[n].checkpoint("count")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sealers[0].checkpoint("shutdown")
    chain = _sink(settings)
    assert [cp.index for cp in chain] == list(range(1, len(chain) + 1)) and chain[-1].seq == 80
    check = verify_report(logs[0])
    assert check.ok and check.sealed == 80 and check.checkpoints == len(chain), check.findings


def test_a_crash_between_sink_and_store_is_repaired(settings: Settings) -> None:
    log = open_log(settings)
    sealer = Sealer(log, every=5)
    for i in range(5):
        log.append([_record(i)])
    sealer.checkpoint("count")
    with sqlite3.connect(settings.metadata_url.removeprefix("sqlite:///")) as raw:
        raw.execute("DELETE FROM audit_checkpoints")  # as if the process died after delivering
    assert verify_report(log).problem == "checkpoint deleted"
    log.append([_record(6)])
    sealer.checkpoint("count")
    assert [c["idx"] for c in log.checkpoints()] == [1, 2]
    assert verify_report(log).ok


def test_a_disk_full_mid_checkpoint_leaves_no_torn_line_and_sealing_resumes(settings: Settings) -> None:
    """The kernel writes part of a line and stops (a full disk; here the file size limit, which fails
    a write the same way, in this process only): the sink must keep whole checkpoints only, so
    sealing and `audit verify` work again once there is room."""
    log = open_log(settings)
    sealer = Sealer(log, every=1000)
    log.append([_record(0)])
    sealer.checkpoint("count")
    sink = Path(settings.audit_sink)
    full = sink.stat().st_size + 40  # room for 40 more bytes: a fraction of a checkpoint line
    log.append([_record(1)])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error (EFBIG), not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (full, hard))
    try:
        with pytest.raises(SinkError, match="short write"):
            sealer.checkpoint("count")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert sink.read_text().endswith("\n") and len(_sink(settings)) == 1, "a torn line was left"
    sealer.checkpoint("count")  # room again: the same checkpoint goes through
    assert [cp.seq for cp in _sink(settings)] == [1, 2]
    assert verify_report(log).ok


def test_a_sink_that_lost_checkpoints_stops_sealing(settings: Settings) -> None:
    log = open_log(settings)
    sealer = Sealer(log)
    log.append([_record(1)])
    sealer.checkpoint("count")
    Path(settings.audit_sink).unlink()  # replaced by an empty sink
    log.append([_record(2)])
    with pytest.raises(SealRefused, match="truncated or replaced"):
        sealer.checkpoint("count")
    assert not Path(settings.audit_sink).exists()


@pytest.mark.parametrize("other_head", [5, 10, 15], ids=["behind", "level", "ahead"])
def test_a_sink_holding_another_logs_chain_is_refused(settings: Settings, other_head: int) -> None:
    """Two metadata stores under one home (same key, same default sink): the second store's sealer
    must refuse the first one's chain, whether its own log is shorter (nothing to extend: it used to
    seal nothing and report nothing), as long, or longer (refused as a changed record before)."""
    first = open_log(settings)
    for i in range(10):
        first.append([_record(i)])
    assert Sealer(first).checkpoint("count")
    other = open_log(replace(settings, metadata_url=f"sqlite:///{settings.home / 'other.db'}"))
    for i in range(other_head):
        other.append([_record(100 + i)])
    sealer = Sealer(other)
    with pytest.raises(SealRefused, match="another log's checkpoints"):
        sealer.checkpoint("interval")
    assert sealer.seal("interval") == [] and "another log's checkpoints" in (sealer.last_error or "")
    assert not sealer.status()[0]  # /readyz reports it
    assert [cp.seq for cp in _sink(settings)] == [10]  # the first log's chain is left as it was
    assert verify_report(first).ok


# -- migration from HMAC checkpoints ------------------------------------------------------------------


def _legacy_log(settings: Settings, key: str, n: int = 120) -> None:
    """A log as the HMAC version wrote it: unsigned records, an HMAC checkpoint every 100."""
    engine = get_engine(settings.metadata_url)
    log = AccessLog(engine).ensure_schema()
    for i in range(n):
        log.append([_record(i)])
    table = Table(
        "access_log_checkpoints",
        MetaData(),
        Column("seq", BigInteger, primary_key=True),
        Column("hash", String(64)),
        Column("ts", String(40)),
        Column("signature", String(64)),
    )
    table.create(engine)
    row = next(r for r in log.rows() if r["seq"] == 100)
    ts = "2026-11-01T00:00:00.000000Z"
    signature = hmac.new(key.encode(), f"100|{row['hash']}|{ts}".encode(), hashlib.sha256).hexdigest()
    with engine.begin() as conn:
        conn.execute(insert(table).values(seq=100, hash=row["hash"], ts=ts, signature=signature))
    dispose_all()


def test_an_hmac_era_log_is_checked_then_sealed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICMESH_AUDIT_KEY", "old-hmac-key")
    _legacy_log(settings, "old-hmac-key")
    log = open_log(settings)
    chain = _sink(settings)
    assert [(cp.reason, cp.first_seq, cp.seq) for cp in chain] == [("migration", 1, 120)]
    log.append([_record(121)])
    check = verify_report(log)
    assert check.ok and check.sealed == 120 and check.unsealed == 1
    open_log(settings)  # a second start: nothing to migrate again
    assert len(_sink(settings)) == 1


def test_a_tampered_hmac_era_log_is_not_sealed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICMESH_AUDIT_KEY", "old-hmac-key")
    _legacy_log(settings, "old-hmac-key")
    with sqlite3.connect(settings.metadata_url.removeprefix("sqlite:///")) as raw:
        raw.execute("DELETE FROM access_log WHERE seq > 100")  # a valid shorter chain...
        raw.execute("DELETE FROM access_log WHERE seq = 100")  # ...that the HMAC checkpoint names
    with pytest.raises(AccessLogUnavailable, match="first bad seq 100: truncated"):
        open_log(settings)
    assert _sink(settings) == []


def test_a_backlog_larger_than_one_round_is_sealed_at_commit_boundaries(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long sink outage more records wait than one round checks (MAX_BATCH): a round must
    end where a commit ends, or the commit it cut is 'unsigned' and sealing stops for good."""
    from meshcore.audit import sealing

    monkeypatch.setattr(sealing, "MAX_BATCH", 10)  # 100,000 in production: the same arithmetic
    log = open_log(settings)
    for i in range(0, 30, 3):
        log.append([_record(i), _record(i + 1), _record(i + 2)])  # one commit of 3 (a group commit)
    sealer = Sealer(log)
    written = sealer.checkpoint("interval")
    assert sealer.last_error is None and written and written[-1].seq == 30
    assert [cp.seq for cp in _sink(settings)] == [cp.seq for cp in written]
    check = verify_report(log)
    assert check.ok and check.sealed == 30, check.findings


def test_a_restored_backup_verifies_and_keeps_sealing(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's `backup`, `restore`, `audit verify` on a home whose sink and public key live in
    its audit/ folder (the default): the copy holds both, cut to the checkpoints the store copy
    holds, so the restored log verifies and its gateway can seal on."""
    from civicmesh.backup import backup, restore
    from civicmesh.cli import main

    log = open_log(settings)
    sealer = Sealer(log)
    for i in range(120):
        log.append([_record(i)])
        if i in (49, 99):
            sealer.checkpoint("count")
    sealer.detach()
    backup(settings, tmp_path / "backup")
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "restored"))
    restored = Settings.from_env()
    restore(restored, tmp_path / "backup")
    dispose_all()
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0, capsys.readouterr()
    assert "seal records 1..100" in capsys.readouterr().out
    again = open_log(restored)
    again.append([_record(120)])
    sealer = Sealer(again)
    assert sealer.checkpoint("interval") and sealer.last_error is None
    assert verify_report(again).ok
