"""Archived access-log segments (issue 16, item 3): only sealed records leave the store, a crash
between writing and deleting loses and duplicates nothing, and `audit verify` reads the archive and
the store as one chain — every attack on an archive file is reported, naming the file and the seq."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from civicmesh.cli import main
from meshcore.accesslog import AccessLog, AccessRecord, chain_hash
from meshcore.audit.archive import KEPT_ACTIONS, ArchivedPeriod, read_segments, refuse_archived
from meshcore.audit.archiving import ArchiveRefused, archive_sealed
from meshcore.audit.sealing import Sealer, open_log
from meshcore.audit.verify import verify_report
from meshcore.settings import Settings
from meshcore.snapshots import file_checksum
from policies import versions

OLD = "2026-01-01T00:00:00.000000Z"


def _record(i: int, action: str = "read", ts: str | None = None) -> AccessRecord:
    extra = {"ts": ts} if ts else {}
    return AccessRecord(
        request_id=f"r{i}", action=action, status=200, decision="allow", subject="bob", product="a.b", **extra
    )


def fill(log: AccessLog, first: int, last: int, every: int = 100, old_until: int = 0) -> None:
    """Records first..last in single-record commits, a checkpoint at every `every`th; records up
    to `old_until` stamped on 2026-01-01, seq 5 a policy load (a record the store keeps)."""
    sealer = Sealer(log, every=every)
    for i in range(first, last + 1):
        log.append([_record(i, "policy_version" if i == 5 else "read", OLD if i <= old_until else None)])
        if i % every == 0:
            assert sealer.checkpoint("count")
    sealer.detach()


@pytest.fixture
def log(settings: Settings) -> AccessLog:
    log = open_log(settings)
    fill(log, 1, 230)
    return log


def _stored_seqs(settings: Settings) -> list[int]:
    engine = create_engine(settings.metadata_url)
    with engine.connect() as conn:
        seqs = [int(s) for (s,) in conn.execute(text("SELECT seq FROM access_log ORDER BY seq"))]
    engine.dispose()
    return seqs


def _archived_seqs(settings: Settings) -> list[int]:
    return [int(r["seq"]) for s in read_segments(settings.audit_archive_dir) for r in s.rows()]


def test_archive_moves_sealed_records_and_verify_reads_one_chain(settings: Settings, log: AccessLog) -> None:
    report = archive_sealed(log)
    [segment] = report.segments
    assert (segment.first_seq, segment.last_seq, segment.checkpoint["index"]) == (1, 200, 2)
    assert _archived_seqs(settings) == list(range(1, 201))
    assert _stored_seqs(settings) == [5, *range(201, 231)]  # the policy load stays
    manifest = json.loads(segment.manifest_path.read_text())
    assert manifest["first_prev_hash"] == "0" * 64 and manifest["last_hash"] == segment.checkpoint["hash"]
    check = verify_report(log)
    assert check.ok, check.findings
    assert check.head == 230

    fill(log, 231, 330)  # the store's first record links to the archive's last hash
    second = archive_sealed(log).segments
    assert [(s.first_seq, s.last_seq) for s in second] == [(201, 300)]
    assert verify_report(log).ok
    assert _archived_seqs(settings) == list(range(1, 301))


def test_unsealed_records_and_the_head_are_never_archived(settings: Settings) -> None:
    log = open_log(settings)
    fill(log, 1, 99)  # no checkpoint yet
    assert archive_sealed(log).segments == []
    fill(log, 100, 200)  # checkpoints end at 100 and at 200, the head
    [segment] = archive_sealed(log).segments
    assert segment.last_seq == 100  # the head stays: the next record chains onto it
    log.append([_record(201)])
    assert _stored_seqs(settings)[-2:] == [200, 201]
    assert verify_report(log).ok


def test_archive_before_a_date_stops_at_the_checkpoint_before_it(settings: Settings) -> None:
    log = open_log(settings)
    fill(log, 1, 230, old_until=150)
    [segment] = archive_sealed(log, "2026-06-01T00:00:00.000000Z").segments
    assert (segment.first_seq, segment.last_seq, segment.max_ts) == (1, 100, OLD)
    assert verify_report(log).ok


def test_a_log_that_does_not_verify_is_not_archived(settings: Settings, log: AccessLog) -> None:
    with log.engine.begin() as conn:
        conn.execute(text("UPDATE access_log SET subject = 'mallory' WHERE seq = 30"))
    with pytest.raises(ArchiveRefused, match="first bad seq 30"):
        archive_sealed(log)
    assert read_segments(settings.audit_archive_dir) == []
    assert len(_stored_seqs(settings)) == 230


def test_a_crash_between_writing_and_deleting_loses_and_duplicates_nothing(
    settings: Settings, log: AccessLog
) -> None:
    """The archiving process is killed (SIGKILL) after its segment is durable, before the delete."""
    child = textwrap.dedent(
        """
        import os, signal
        from meshcore.audit.archiving import archive_sealed
        from meshcore.audit.sealing import open_log
        from meshcore.settings import Settings
        archive_sealed(open_log(Settings.from_env()), written=lambda s: os.kill(os.getpid(), signal.SIGKILL))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], env=os.environ, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert _archived_seqs(settings) == list(range(1, 201))
    assert _stored_seqs(settings) == list(range(1, 231))  # both copies: nothing lost
    assert verify_report(log).ok  # and they agree

    report = archive_sealed(log)  # the next run finishes the delete and archives nothing twice
    assert (report.finished, report.segments) == (199, [])
    assert _archived_seqs(settings) == list(range(1, 201))
    assert _stored_seqs(settings) == [5, *range(201, 231)]
    assert verify_report(log).ok


def test_kept_records_are_the_ones_policy_history_reads(settings: Settings) -> None:
    assert {versions.LOADED, versions.REJECTED, "approve", "revoke"} == set(KEPT_ACTIONS)


# -- attacks on the archive: each must be reported, naming the file and the first bad record ----------


def _segment_file(settings: Settings) -> Path:
    [segment] = read_segments(settings.audit_archive_dir)
    return segment.path


def _lines(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def _lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path: Path, rows: list[dict], update_manifest: bool) -> None:
    with gzip.open(path, "wt") as handle:  # another compressor setting: other bytes
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    if update_manifest:
        manifest_path = path.with_name(path.name + ".manifest.json")
        manifest = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**manifest, "sha256": file_checksum(path)}))


def _edit(settings: Settings, update_manifest: bool, rechain: bool = False) -> None:
    path = _segment_file(settings)
    rows = _lines(path)
    rows[59]["subject"] = "mallory"  # seq 60
    if rechain:
        for n in range(59, len(rows)):
            rows[n]["prev_hash"] = rows[n - 1]["hash"]
            rows[n]["hash"] = chain_hash(rows[n])
    _rewrite(path, rows, update_manifest)


def _truncate(settings: Settings) -> None:
    path = _segment_file(settings)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _reorder(settings: Settings) -> None:
    path = _segment_file(settings)
    rows = _lines(path)
    rows[39], rows[40] = rows[40], rows[39]
    _rewrite(path, rows, update_manifest=True)


def _delete_file(settings: Settings) -> None:
    _segment_file(settings).unlink()


def _delete_file_and_manifest(settings: Settings) -> None:
    path = _segment_file(settings)
    path.with_name(path.name + ".manifest.json").unlink()
    path.unlink()


def _delete_kept_record(settings: Settings) -> None:
    engine = create_engine(settings.metadata_url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM access_log WHERE seq = 5"))
    engine.dispose()


def _corrupt_manifest(settings: Settings) -> None:
    path = _segment_file(settings)
    path.with_name(path.name + ".manifest.json").write_text("{not json")


def _edit_manifest_hash(settings: Settings) -> None:
    path = _segment_file(settings)
    manifest_path = path.with_name(path.name + ".manifest.json")
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "last_hash": "f" * 64}))


ATTACKS = {
    "missing-file": (_delete_file, 1, "archive missing"),
    "truncated-file": (_truncate, None, "archive truncated"),
    "edited-record": (lambda s: _edit(s, update_manifest=False), 60, "modified"),
    "recompressed-with-edit-and-new-checksum": (lambda s: _edit(s, update_manifest=True), 60, "modified"),
    "recompressed-with-edit-and-rechained": (lambda s: _edit(s, True, rechain=True), 60, "modified"),
    "reordered": (_reorder, 40, "archive out of order"),
    "file-and-manifest-deleted": (_delete_file_and_manifest, 1, "deleted"),
    "kept-record-deleted-from-the-store": (_delete_kept_record, 5, "deleted"),
    "manifest-corrupted": (_corrupt_manifest, 1, "archive unreadable"),
    "manifest-edited": (_edit_manifest_hash, 1, "archive modified"),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_attacks_on_the_archive_are_reported(
    settings: Settings, log: AccessLog, attack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    archive_sealed(log)
    tamper, seq, problem = ATTACKS[attack]
    tamper(settings)
    code = main(["audit", "verify", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and not result["ok"]
    problems = {(f["seq"], f["problem"]) for f in result["findings"]}
    assert any(p == problem and (seq is None or s == seq) for s, p in problems), problems
    if attack != "kept-record-deleted-from-the-store":
        name = "000000000001-000000000200.jsonl.gz"
        assert any(name in f["detail"] for f in result["findings"]) or problem == "deleted", result


def test_a_deleted_middle_segment_is_reported(settings: Settings, log: AccessLog) -> None:
    archive_sealed(log, segment_records=100)  # two segments: 1..100, 101..200
    assert [s.last_seq for s in read_segments(settings.audit_archive_dir)] == [100, 200]
    middle = settings.audit_archive_dir / "000000000001-000000000100.jsonl.gz"
    middle.unlink()
    middle.with_name(middle.name + ".manifest.json").unlink()
    check = verify_report(log)
    assert not check.ok and (check.first_bad, check.problem) == (1, "deleted")


# -- periods over the archive: refused, never answered in part -----------------------------------------


def test_export_of_an_archived_period_is_refused(
    settings: Settings, log: AccessLog, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["audit", "archive", "--sealed"]) == 0
    assert "archived seq 1..200" in capsys.readouterr().out
    out = tmp_path / "export.jsonl"
    assert main(["audit", "export", "--out", str(out)]) != 0
    assert "records 1..200 of the access log" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ArchivedPeriod):
        refuse_archived(log, None)
    newest = datetime.fromisoformat(read_segments(settings.audit_archive_dir)[-1].max_ts)
    after = (newest + timedelta(microseconds=1)).isoformat()
    assert main(["audit", "export", "--since", after, "--out", str(out)]) == 0
    assert [r["seq"] for r in _lines_of(out)][:2] == [201, 202]
    assert main(["audit", "verify"]) == 0
    # the archiving and the export were logged: 230 + 2
    verified = capsys.readouterr().out
    assert "OK: access log verified, head seq 232" in verified
    assert "records 1..200 read from the archive" in verified


def test_a_report_over_an_archived_period_is_refused(
    settings: Settings, log: AccessLog, capsys: pytest.CaptureFixture[str]
) -> None:
    """(`audit readers` and `readersOfDerived`: tests/gateway/test_gateway_accesslog_archive.py)"""
    archive_sealed(log)
    assert main(["audit", "report", "--days", "30"]) != 0
    assert "are archived" in capsys.readouterr().err


def test_archive_crash_and_verify_on_both_backends(
    settings: Settings, metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite and PostgreSQL: a run interrupted after writing (an exception here), then a full run."""
    monkeypatch.setenv("CIVICMESH_METADATA_URL", metadata_url)
    settings = Settings.from_env()
    log = open_log(settings)
    fill(log, 1, 230)

    def interrupted(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        archive_sealed(log, written=interrupted)
    assert verify_report(log).ok and len(_stored_seqs(settings)) == 230
    assert archive_sealed(log).finished == 199
    assert _stored_seqs(settings) == [5, *range(201, 231)] and _archived_seqs(settings) == list(range(1, 201))
    fill(log, 231, 330)
    assert [s.first_seq for s in archive_sealed(log).segments] == [201]
    check = verify_report(log)
    assert check.ok and check.head == 330, check.findings


def test_a_second_run_at_the_same_time_is_refused(settings: Settings, log: AccessLog) -> None:
    settings.audit_archive_dir.mkdir(parents=True)
    with (settings.audit_archive_dir / ".lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a run in another process holds it
        with pytest.raises(ArchiveRefused, match="another `audit archive` is running"):
            archive_sealed(log)
    assert read_segments(settings.audit_archive_dir) == [] and len(_stored_seqs(settings)) == 230
    assert [s.last_seq for s in archive_sealed(log).segments] == [200]
