"""Tampering with the access log, each kind caught by `civicmesh audit verify` against the external
sink with the public key alone, naming the right record (issue 12, acceptance 1), on SQLite and on
PostgreSQL.

The attacker here can rewrite the metadata store at will (plain SQL on its own connection) but holds
neither the private key nor write access to the checkpoint sink, except where a test says otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text

from civicmesh.cli import main
from meshcore.accesslog import AccessLog, AccessRecord, chain_hash
from meshcore.audit.sealing import Sealer, open_log
from meshcore.seals.checkpoints import seal_message
from meshcore.seals.signing import AuditKeyError, Signer
from meshcore.settings import Settings
from meshcore.store import dispose_all

Tamper = Callable[[Connection, Settings], None]


@pytest.fixture
def settings(settings: Settings, metadata_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The core tests' tmp home, with its metadata store on SQLite and on PostgreSQL."""
    monkeypatch.setenv("CIVICMESH_METADATA_URL", metadata_url)
    yield Settings.from_env()
    dispose_all()


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


class _Raw:
    """The attacker's own connection to the store (not civicmesh's engine), in one transaction."""

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings.metadata_url)

    def __enter__(self) -> Connection:
        self.conn = self.engine.connect()
        self.conn.begin()
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.commit() if exc[0] is None else self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


def _raw(settings: Settings) -> _Raw:
    return _Raw(settings)


def _run(raw: Connection, statement: str, **params: Any) -> Any:
    return raw.execute(text(statement), params)


def _row(raw: Connection, seq: int) -> dict:
    return dict(_run(raw, "SELECT * FROM access_log WHERE seq = :seq", seq=seq).one()._mapping)


def rewrite_from(raw: Connection, seq: int, **change: object) -> None:
    """Edit record `seq` and recompute every later hash: a chain that is whole again."""
    prev = _row(raw, seq - 1)["hash"] if seq > 1 else "0" * 64
    head = _run(raw, "SELECT max(seq) FROM access_log").scalar()
    for n in range(seq, head + 1):
        row = {**_row(raw, n), "prev_hash": prev, **(change if n == seq else {})}
        row["hash"] = prev = chain_hash(row)
        sets = ", ".join(f"{k} = :{k}" for k in row if k != "seq")
        _run(raw, f"UPDATE access_log SET {sets} WHERE seq = :seq", **row)


def swap(raw: Connection, _: Settings) -> None:
    _run(raw, "UPDATE access_log SET seq = -seq WHERE seq IN (40, 41)")
    _run(raw, "UPDATE access_log SET seq = 41 WHERE seq = -40")
    _run(raw, "UPDATE access_log SET seq = 40 WHERE seq = -41")


def forge_append(raw: Connection, _: Settings) -> None:
    last = _row(raw, 230)
    row = {**last, "seq": 231, "request_id": "forged", "subject": "mallory", "prev_hash": last["hash"]}
    row["hash"] = chain_hash(row)
    _run(raw, f"INSERT INTO access_log ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})", **row)


def truncate(raw: Connection, _: Settings) -> None:
    _run(raw, "DELETE FROM access_log WHERE seq >= 150")
    _run(raw, "DELETE FROM access_log_seals WHERE seq >= 150")  # the attacker hides that too


def delete_all_checkpoints_then_rewrite(raw: Connection, _: Settings) -> None:
    _run(raw, "DELETE FROM audit_checkpoints")
    _run(raw, "DELETE FROM access_log_seals")
    rewrite_from(raw, 150, subject="mallory")


def delete_sink_line(raw: Connection, settings: Settings) -> None:
    """The sink is supposed to be append-only; a file on the same host is not, unless made so."""
    sink = Path(settings.audit_sink)
    lines = sink.read_text().splitlines(keepends=True)
    sink.write_text("".join(lines[1:]))


def roll_back_sink(raw: Connection, settings: Settings) -> None:
    """The sink restored from an older copy: it ends at checkpoint #1, the store holds #2."""
    sink = Path(settings.audit_sink)
    sink.write_text(sink.read_text().splitlines(keepends=True)[0])


def edit_sink_line(raw: Connection, settings: Settings) -> None:
    sink = Path(settings.audit_sink)
    lines = sink.read_text().splitlines(keepends=True)
    lines[1] = json.dumps({**json.loads(lines[1]), "reason": "interval"}) + "\n"
    sink.write_text("".join(lines))


def forge_append_with_own_key(raw: Connection, settings: Settings) -> None:
    """A forged record with a commit seal, signed by a key the attacker made."""
    forge_append(raw, settings)
    signature = Signer.generate().sign(seal_message(231, 231, _row(raw, 231)["hash"]))
    _run(raw, "INSERT INTO access_log_seals (seq, first_seq, signature) VALUES (231, 231, :s)", s=signature)


def insert_then_rechain(raw: Connection, _: Settings) -> None:
    """A record slipped in at seq 120: the later ones renumbered, every hash recomputed."""
    for n in range(230, 119, -1):
        _run(raw, "UPDATE access_log SET seq = :m WHERE seq = :n", m=n + 1, n=n)
    row = {**_row(raw, 119), "seq": 120, "request_id": "slipped-in"}
    _run(raw, f"INSERT INTO access_log ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})", **row)
    rewrite_from(raw, 120)


def delete_first_then_rechain(raw: Connection, _: Settings) -> None:
    _run(raw, "DELETE FROM access_log WHERE seq = 1")
    for n in range(2, 231):
        _run(raw, "UPDATE access_log SET seq = :m WHERE seq = :n", m=n - 1, n=n)
    rewrite_from(raw, 1)


def forge_checkpoint(raw: Connection, _: Settings) -> None:
    body = json.loads(_run(raw, "SELECT body FROM audit_checkpoints WHERE idx = 2").scalar())
    body["reason"] = "interval"
    _run(raw, "UPDATE audit_checkpoints SET body = :body WHERE idx = 2", body=json.dumps(body))


def sql(*statements: str) -> Tamper:
    def run(raw: Connection, _: Settings) -> None:
        for statement in statements:
            _run(raw, statement)

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
    "roll-back-sink": (roll_back_sink, 200, "checkpoint not in the sink"),
    "edit-sink-checkpoint": (edit_sink_line, 200, "forged checkpoint"),
    "forged-append-with-own-key": (forge_append_with_own_key, 231, "forged"),
    "insert-then-rechain": (insert_then_rechain, 120, "modified"),
    "delete-first-then-rechain": (delete_first_then_rechain, 1, "modified"),
    "delete-unsealed-seals": (sql("DELETE FROM access_log_seals WHERE seq > 200"), 201, "forged"),
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
        _run(raw, "DELETE FROM audit_checkpoints")
        _run(raw, "DELETE FROM access_log_seals")
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


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_a_signing_key_is_never_replaced_silently(settings: Settings, change: str) -> None:
    """A lost or swapped private key (a wrong CIVICMESH_AUDIT_SIGNING_KEY_FILE, an attacker's own
    key) would sign the rest of the log with another key and overwrite the public key auditors are
    given: the writer refuses to start instead, and the exported public key stays as it was."""
    fill(settings, n=5)
    exported = settings.audit_public_key_file.read_text()
    settings.audit_signing_key_file.unlink()
    if change == "replaced":
        settings.audit_signing_key_file.write_bytes(Signer.generate().pem())
    dispose_all()
    with pytest.raises(AuditKeyError, match=str(settings.audit_public_key_file)):
        open_log(settings)
    assert settings.audit_public_key_file.read_text() == exported
    assert settings.audit_signing_key_file.exists() == (change == "replaced")
