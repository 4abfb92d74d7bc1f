"""Tampering with the access log, each kind caught by `civicmesh audit verify` against the external
sink with the public key alone, naming the right record (issue 12, acceptance 1).

The attacker here can rewrite the metadata store at will (SQL on the SQLite file) but holds neither
the private key nor write access to the checkpoint sink, except where a test says otherwise."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from civicmesh.accesslog import AccessLog, AccessRecord, chain_hash
from civicmesh.audit.sealing import Sealer, open_log
from civicmesh.cli import main
from civicmesh.settings import Settings
from civicmesh.store import dispose_all

Tamper = Callable[[sqlite3.Connection, Settings], None]


def _record(i: int) -> AccessRecord:
    return AccessRecord(
        request_id=f"r{i}", action="read", status=200, decision="allow", subject="bob", product="a.b", rows=i
    )


def fill(settings: Settings, n: int = 230, every: int = 100) -> AccessLog:
    """`n` records in single-record commits, checkpoints at every `every` (as the sealer's count)."""
    log = open_log(settings)
    sealer = Sealer(log, every=every)
    for i in range(1, n + 1):
        log.append([_record(i)])
        if i % every == 0:
            assert sealer.checkpoint("count")
    sealer.detach()
    return log


def _raw(settings: Settings) -> sqlite3.Connection:
    return sqlite3.connect(settings.metadata_url.removeprefix("sqlite:///"))


def _row(raw: sqlite3.Connection, seq: int) -> dict:
    cursor = raw.execute("SELECT * FROM access_log WHERE seq = ?", (seq,))
    return dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))


def rewrite_from(raw: sqlite3.Connection, seq: int, **change: object) -> None:
    """Edit record `seq` and recompute every later hash: a chain that is whole again."""
    prev = _row(raw, seq - 1)["hash"] if seq > 1 else "0" * 64
    head = raw.execute("SELECT max(seq) FROM access_log").fetchone()[0]
    for n in range(seq, head + 1):
        row = {**_row(raw, n), "prev_hash": prev, **(change if n == seq else {})}
        row["hash"] = prev = chain_hash(row)
        sets = ", ".join(f"{k} = ?" for k in row if k != "seq")
        raw.execute(
            f"UPDATE access_log SET {sets} WHERE seq = ?", [*(v for k, v in row.items() if k != "seq"), n]
        )


def swap(raw: sqlite3.Connection, _: Settings) -> None:
    raw.execute("UPDATE access_log SET seq = -seq WHERE seq IN (40, 41)")
    raw.execute("UPDATE access_log SET seq = 41 WHERE seq = -40")
    raw.execute("UPDATE access_log SET seq = 40 WHERE seq = -41")


def forge_append(raw: sqlite3.Connection, _: Settings) -> None:
    last = _row(raw, 230)
    row = {**last, "seq": 231, "request_id": "forged", "subject": "mallory", "prev_hash": last["hash"]}
    row["hash"] = chain_hash(row)
    raw.execute(
        f"INSERT INTO access_log ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )


def truncate(raw: sqlite3.Connection, _: Settings) -> None:
    raw.execute("DELETE FROM access_log WHERE seq >= 150")
    raw.execute("DELETE FROM access_log_seals WHERE seq >= 150")  # the attacker hides that too


def delete_all_checkpoints_then_rewrite(raw: sqlite3.Connection, _: Settings) -> None:
    raw.execute("DELETE FROM audit_checkpoints")
    raw.execute("DELETE FROM access_log_seals")
    rewrite_from(raw, 150, subject="mallory")


def delete_sink_line(raw: sqlite3.Connection, settings: Settings) -> None:
    """The sink is supposed to be append-only; a file on the same host is not, unless made so."""
    sink = Path(settings.audit_sink)
    lines = sink.read_text().splitlines(keepends=True)
    sink.write_text("".join(lines[1:]))


def forge_checkpoint(raw: sqlite3.Connection, _: Settings) -> None:
    body = json.loads(raw.execute("SELECT body FROM audit_checkpoints WHERE idx = 2").fetchone()[0])
    body["reason"] = "interval"
    raw.execute("UPDATE audit_checkpoints SET body = ? WHERE idx = 2", (json.dumps(body),))


def sql(*statements: str) -> Tamper:
    def run(raw: sqlite3.Connection, _: Settings) -> None:
        for statement in statements:
            raw.execute(statement)

    return run


CASES = {
    "edit": (sql("UPDATE access_log SET subject = 'mallory' WHERE seq = 30"), 30, "modified"),
    "edit-then-rechain": (lambda raw, _: rewrite_from(raw, 150, rows=0), 150, "modified"),
    "edit-unsealed-then-rechain": (lambda raw, _: rewrite_from(raw, 210, rows=0), 210, "forged"),
    "delete": (sql("DELETE FROM access_log WHERE seq = 60"), 60, "deleted"),
    "reorder": (swap, 40, "reordered"),
    "truncate-tail": (truncate, 150, "truncated"),
    "forged-append": (forge_append, 231, "forged"),
    "delete-all-checkpoints-then-rewrite": (delete_all_checkpoints_then_rewrite, 150, "modified"),
    "delete-one-checkpoint": (sql("DELETE FROM audit_checkpoints WHERE idx = 2"), 200, "checkpoint deleted"),
    "delete-one-checkpoint-in-sink": (delete_sink_line, 100, "checkpoint deleted"),
    "forge-checkpoint": (forge_checkpoint, 200, "forged checkpoint"),
}


def _verify(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict, str]:
    code = main(["audit", "verify", "--json", *extra])
    result = json.loads(capsys.readouterr().out)
    code_text = main(["audit", "verify", *extra])
    text = capsys.readouterr().out
    assert code_text == code
    return code, result, text


def test_an_untouched_log_verifies_and_says_what_is_not_sealed_yet(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(settings)
    code, result, text = _verify(capsys)
    assert code == 0, text
    assert (result["head"], result["sealed"], result["unsealed"], result["checkpoints"]) == (230, 200, 30, 2)
    assert "head seq 230" in text and "records 1..200" in text and "the 30 newest records" in text


@pytest.mark.parametrize("kind", sorted(CASES))
def test_tampering_is_detected_naming_the_record(
    settings: Settings, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    tamper, seq, problem = CASES[kind]
    fill(settings)
    with _raw(settings) as raw:
        tamper(raw, settings)
    code, result, text = _verify(capsys)
    assert code == 1, text
    assert (result["first_bad"], result["problem"]) == (seq, problem), text
    assert text.startswith(f"BAD: first bad seq {seq}: {problem}"), text


def test_a_key_the_auditor_does_not_hold_proves_nothing(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Whoever controls the home may re-key everything; the auditor pins the key they were given."""
    fill(settings)
    pinned = tmp_path / "auditor.pem"
    pinned.write_text(Path(settings.audit_public_key_file).read_text())
    for path in (settings.audit_signing_key_file, Path(settings.audit_sink), settings.audit_public_key_file):
        path.unlink()
    with _raw(settings) as raw:
        raw.execute("DELETE FROM audit_checkpoints")
        raw.execute("DELETE FROM access_log_seals")
    dispose_all()
    fill(settings, n=0)  # a fresh key; the attacker re-seals the log with it (a new "migration")
    Sealer(open_log(settings)).checkpoint("count", legacy=True)
    assert _verify(capsys)[0] == 0  # the home's own (replaced) key agrees with itself
    code, result, _ = _verify(capsys, "--public-key", str(pinned))
    assert code == 1 and result["first_bad"] == 1  # no record carries a signature of the pinned key
    assert {f["problem"] for f in result["findings"]} >= {"forged checkpoint"}


def test_the_sealer_never_seals_a_forged_record(settings: Settings) -> None:
    log = fill(settings)
    with _raw(settings) as raw:
        forge_append(raw, settings)
    sealer = Sealer(log, every=100)
    assert sealer.seal("interval") == []
    ok, detail = sealer.status()
    assert not ok and "231" in detail
    assert json.loads(Path(settings.audit_sink).read_text().splitlines()[-1])["seq"] == 200
