"""Records appended inside a caller's transaction (grant changes), and export edge cases."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from civicmesh.audit.export import export_log, verify_export
from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.audit.verify import verify_report
from meshcore.seals.signing import Signer
from meshcore.seals.sinks import FileSink
from meshcore.store import dispose_all, get_engine


def _record(i: int) -> AccessRecord:
    return AccessRecord(request_id=f"r{i}", action="read", status=200, subject="bob", product="a.b", rows=i)


@pytest.fixture
def log(metadata_url: str, tmp_path: Path) -> AccessLog:
    engine = get_engine(metadata_url)
    yield AccessLog(engine, signer=Signer.generate(), sink=FileSink(tmp_path / "checkpoints.jsonl"))
    dispose_all()


def test_append_in_commits_and_rolls_back_with_the_caller(log: AccessLog) -> None:
    log.ensure_schema()
    with log.engine.begin() as conn:
        conn.execute(text("CREATE TABLE grants (id INTEGER)"))
    log.append([_record(1)])
    with log.engine.begin() as conn:
        conn.execute(text("INSERT INTO grants VALUES (1)"))
        assert log.append_in(conn, [_record(2), _record(3)]) == [2, 3]
    with pytest.raises(RuntimeError), log.engine.begin() as conn:
        conn.execute(text("INSERT INTO grants VALUES (2)"))
        log.append_in(conn, [_record(4)])
        raise RuntimeError("the grant change fails")
    assert log.append([_record(5)]) == [4]  # the rolled-back record left no hole
    with log.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM grants")).scalar() == 1
    assert verify_report(log).first_bad is None


def test_append_in_and_group_commits_interleave_into_one_chain(log: AccessLog) -> None:
    log.ensure_schema()

    def requests() -> None:
        for i in range(60):
            log.append([_record(i)])

    def admin() -> None:
        for i in range(30):
            with log.engine.begin() as conn:
                log.append_in(conn, [_record(1000 + i)])

    threads = [threading.Thread(target=requests) for _ in range(3)] + [threading.Thread(target=admin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.head() == 3 * 60 + 30
    assert verify_report(log).first_bad is None
    # every commit, group commits and administrative ones alike, is sealed exactly once
    seals = log.seals()
    assert sorted(first for first, _ in seals.values()) == [1, *(seq + 1 for seq in sorted(seals)[:-1])]


def test_export_of_an_empty_period(log: AccessLog, tmp_path: Path) -> None:
    log.ensure_schema()
    log.append([_record(1)])
    from datetime import UTC, datetime

    out = tmp_path / "none.jsonl"
    manifest = export_log(
        log, out, "jsonl", since=datetime(2001, 1, 1, tzinfo=UTC), until=datetime(2001, 2, 1, tzinfo=UTC)
    )
    assert manifest["record_count"] == 0 and manifest["first_seq"] is None
    assert verify_export(out, manifest, log.verifier) == []
