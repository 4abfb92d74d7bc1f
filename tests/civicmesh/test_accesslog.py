"""The access log: gap-free hash chain, group commit across threads and processes, tamper detection."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from meshcore.accesslog import AccessLog, AccessLogUnavailable, AccessRecord
from meshcore.audit.verify import verify_report
from meshcore.seals.signing import Signer
from meshcore.store import dispose_all, get_engine
from tests.store_faults import allow_inserts, raw_sql, refuse_inserts


def _record(i: int, subject: str = "alice") -> AccessRecord:
    return AccessRecord(
        request_id=f"r{i}",
        action="read",
        status=200,
        decision="allow",
        reason="owner",
        subject=subject,
        roles=["owner@public_works"],
        product="public_works.service_requests",
        columns_requested=["district", "requester_name"],
        columns_returned=["district", "requester_name"],
        columns_masked={"requester_name": "hash"},
        row_filter={"column": "district", "values": ["D3"]},
        rows=i,
        latency_ms=1.23456,
    )


@pytest.fixture
def db(metadata_url: str) -> str:
    """On SQLite and on PostgreSQL."""
    yield metadata_url
    dispose_all()


def test_append_assigns_contiguous_seqs_and_chain_verifies(db: str) -> None:
    log = AccessLog(get_engine(db)).ensure_schema()
    assert log.append([_record(1), _record(2)]) == [1, 2]
    assert log.append([_record(3)]) == [3]
    assert verify_report(log).first_bad is None
    rows = list(log.rows())
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert rows[0]["latency_ms"] == 1.235


def test_threads_share_commits_and_keep_one_chain(db: str) -> None:
    log = AccessLog(get_engine(db)).ensure_schema()
    results: list[list[int]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(20):
            seqs = log.append([_record(n * 100 + i), _record(n * 100 + i)])
            with lock:
                results.append(seqs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = sorted(s for seqs in results for s in seqs)
    assert flat == list(range(1, 8 * 20 * 2 + 1))
    assert all(b == a + 1 for a, b in (seqs for seqs in results))  # a caller's records stay together
    assert verify_report(log).first_bad is None


def _process_worker(url: str, n: int) -> None:
    log = AccessLog(get_engine(url))
    for i in range(25):
        log.append([_record(n * 1000 + i, subject=f"p{n}")])
    dispose_all()


def test_several_processes_yield_one_unbroken_chain(db: str) -> None:
    AccessLog(get_engine(db)).ensure_schema()
    dispose_all()  # never fork with open pooled connections
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_worker, args=(db, n)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    log = AccessLog(get_engine(db))
    assert log.head() == 75
    assert verify_report(log).first_bad is None


@pytest.mark.parametrize(
    ("tamper", "bad_seq"),
    [
        ("UPDATE access_log SET subject = 'mallory' WHERE seq = 3", 3),
        ("DELETE FROM access_log WHERE seq = 2", 2),
        ("UPDATE access_log SET seq = -seq WHERE seq IN (2, 3)", 2),
        ("UPDATE access_log SET rows = 999 WHERE seq = 5", 5),
    ],
)
def test_tampering_is_detected_at_the_right_record(db: str, tamper: str, bad_seq: int) -> None:
    log = AccessLog(get_engine(db)).ensure_schema()
    log.append([_record(i) for i in range(1, 6)])
    swap = ["UPDATE access_log SET seq = 3 WHERE seq = -2", "UPDATE access_log SET seq = 2 WHERE seq = -3"]
    raw_sql(db, tamper, *(swap if "-seq" in tamper else []))  # reorder: swap records 2 and 3
    assert verify_report(log).first_bad == bad_seq


def test_unwritable_store_raises_and_writes_nothing(db: str) -> None:
    log = AccessLog(get_engine(db)).ensure_schema()
    log.append([_record(1)])
    refuse_inserts(db)
    with pytest.raises(AccessLogUnavailable):
        log.append([_record(2), _record(3)])
    allow_inserts(db)
    assert log.append([_record(4)]) == [2]
    assert verify_report(log).first_bad is None


def test_record_never_holds_values(db: str) -> None:
    row = _record(1).to_row()
    assert "token" not in " ".join(row)
    assert row["columns_masked"] == '{"requester_name":"hash"}'


def test_each_commit_is_sealed_and_a_forged_seal_is_caught(db: str) -> None:
    log = AccessLog(get_engine(db), signer=Signer.generate()).ensure_schema()
    log.append([_record(1), _record(2)])
    log.append([_record(3)])
    assert {seq: first for seq, (first, _) in log.seals().items()} == {2: 1, 3: 3}
    assert verify_report(log).first_bad is None
    # move record 3 into the first commit's seal
    raw_sql(db, "UPDATE access_log_seals SET first_seq = 2 WHERE seq = 3")
    assert verify_report(log).first_bad == 2


def test_without_a_key_only_the_chain_is_checked(db: str) -> None:
    log = AccessLog(get_engine(db)).ensure_schema()
    log.append([_record(i) for i in range(3)])
    assert log.seals() == {} and verify_report(log).first_bad is None


def test_a_writer_gives_an_older_store_the_index_of_administrative_records(
    db: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`asOf` reads and rights questions read policy and grant records by action on every call: a
    store made before the index existed gets it when a writer opens it (once, on both backends)."""
    from sqlalchemy import inspect

    from meshcore.accesslog import ACTION_INDEX
    from meshcore.settings import Settings

    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", db)
    for name in ("AUDIT_SINK", "AUDIT_SIGNING_KEY_FILE", "AUDIT_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(f"CIVICMESH_{name}", raising=False)
    engine = get_engine(db)
    AccessLog(engine).ensure_schema().append([_record(1)])
    ACTION_INDEX.drop(engine)  # as a store made before it existed

    def indexed() -> bool:
        return ACTION_INDEX.name in {i["name"] for i in inspect(engine).get_indexes("access_log")}

    assert not indexed()
    settings = Settings.from_env()
    settings.ensure_dirs()
    for _ in range(2):  # and a second writer finds it there
        AccessLog.from_settings(settings)
        assert indexed()


def test_columns_requested_are_stored_once_when_all_were_returned(db: str) -> None:
    """Most reads return what they asked for: the list is stored once (`columns_requested` null),
    read back whole, chained as stored; a read that got less keeps both lists."""
    log = AccessLog(get_engine(db), signer=Signer.generate()).ensure_schema()
    partial = _record(2)
    partial.columns_returned = ["district"]
    log.append([_record(1), partial])
    stored = list(log.rows())
    assert [r["columns_requested"] for r in stored] == ["null", '["district","requester_name"]']
    found, _ = log.search(products=None)
    assert [r["columns_requested"] for r in found] == [["district", "requester_name"]] * 2
    assert [r["columns_returned"] for r in found] == [["district", "requester_name"], ["district"]]
    assert verify_report(log).first_bad is None
    raw_sql(db, """UPDATE access_log SET columns_requested = '["district"]' WHERE seq = 1""")
    assert verify_report(log).first_bad == 1
