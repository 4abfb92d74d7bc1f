"""`civicmesh audit export`: the access log of a period as CSV or JSONL, with a verification manifest.

The export holds every stored field of every record, exactly as chained (JSON fields as their stored
canonical text), so anyone can recompute the chain from the file alone: each record's `hash` is the
SHA-256 of the canonical JSON of its other fields (`meshcore.accesslog.chain_hash`), and each
`prev_hash` is the previous record's `hash`. The manifest pins both ends of the range, the record
count and the file's SHA-256, and ships what an auditor needs to check the records offline with
the public key alone (`verify_export`): the public key (PEM) and its id, the signed checkpoints
that cover the range (their per-record digests name the first changed record), the commit seals of
the records after the last checkpoint, and an Ed25519 signature of the manifest itself.

A period is selected by time, but the chain is a sequence: the export covers the contiguous seq
range from the first to the last record stamped inside the period, so it has no holes (a record
stamped just outside the period may sit inside that range: writers stamp before they queue).
A period reaching into archived records (`civicmesh audit archive`) is refused (`ExportError`
naming the archived span), never exported in part.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from meshcore.accesslog import GENESIS_HASH, AccessLog, access_log_table, chain_hash, utc_timestamp
from meshcore.audit.archive import ArchivedPeriod, refuse_archived
from meshcore.audit.verify import trusted_checkpoints, verify_report
from meshcore.seals.checkpoints import Checkpoint, SealRun, canonical, record_digest
from meshcore.seals.signing import Signer, Verifier
from meshcore.snapshots import file_checksum

FORMATS = ("csv", "jsonl")
MANIFEST_VERSION = 2
COLUMNS = tuple(c.name for c in access_log_table.columns)
_INTS = {c.name for c in access_log_table.columns if c.type.python_type is int}
_FLOATS = {c.name for c in access_log_table.columns if c.type.python_type is float}
_NULLABLE = {c.name for c in access_log_table.columns if c.nullable}


class ExportError(ValueError):
    """The export cannot be made or does not verify."""


def seq_range(log: AccessLog, since: datetime | None, until: datetime | None) -> tuple[int, int] | None:
    """(first, last) seq of the records stamped in [since, until), or None if there are none."""
    t = access_log_table
    where = []
    if since is not None:
        where.append(t.c.ts >= utc_timestamp(since))
    if until is not None:
        where.append(t.c.ts < utc_timestamp(until))
    with log.engine.connect() as conn:
        span: Any = conn.execute(select(func.min(t.c.seq), func.max(t.c.seq)).where(*where)).one()
    first, last = span
    return None if first is None else (int(first), int(last))


def _records(log: AccessLog, first: int, last: int) -> Iterator[dict[str, Any]]:
    for row in log.rows(after_seq=first - 1):
        if int(row["seq"]) > last:
            return
        yield row


def _write_row(handle: IO[str], writer: Any, fmt: str, row: dict[str, Any]) -> None:
    if fmt == "jsonl":
        handle.write(json.dumps({c: row[c] for c in COLUMNS}, separators=(",", ":"), sort_keys=False) + "\n")
    else:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])


def _manifest_payload(manifest: dict[str, Any]) -> bytes:
    return canonical({k: v for k, v in manifest.items() if k != "manifest_signature"})


def sign_manifest(signer: Signer, manifest: dict[str, Any]) -> None:
    """Sign (or re-sign, after a change) the manifest in place."""
    manifest["manifest_signature"] = signer.sign(_manifest_payload(manifest))


def _write_records(log: AccessLog, out: Path, fmt: str, span: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Write the contiguous records of `span` to `out` (atomically); returns [first, last] rows."""
    ends: list[dict[str, Any]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(COLUMNS)
        if span is not None:
            expected = span[0]
            for row in _records(log, *span):
                if int(row["seq"]) != expected:
                    break  # a hole in the stored chain: export what is contiguous; verify says why
                ends = [ends[0] if ends else row, row]
                _write_row(handle, writer, fmt, row)
                expected += 1
    tmp.replace(out)
    return ends


def _proofs(log: AccessLog, first: int, last: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(signed checkpoints whose span meets [first, last], commit seals after the last of them)."""
    if log.verifier is None:
        return [], []
    cps = [
        cp.as_dict()
        for cp in trusted_checkpoints(log, log.verifier, log.sink, []).covering()
        if cp.seq >= first and cp.first_seq <= last
    ]
    covered = max([first - 1, *(cp["seq"] for cp in cps)])
    seals = [
        {"seq": seq, "first_seq": f, "signature": sig}
        for seq, (f, sig) in log.seals(after_seq=covered).items()
        if f <= last
    ]
    return cps, seals


def export_log(
    log: AccessLog,
    out: Path,
    fmt: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write the records of [since, until) to `out` and return the manifest (not yet written;
    signed when the log holds the signing key)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    try:
        refuse_archived(log, since)
    except ArchivedPeriod as exc:
        raise ExportError(f"not exported: {exc}") from exc
    ends = _write_records(log, out, fmt, seq_range(log, since, until))
    first, last = (ends[0], ends[-1]) if ends else ({}, {})
    count = int(last["seq"]) - int(first["seq"]) + 1 if ends else 0
    checkpoints, seals = _proofs(log, int(first["seq"]), int(last["seq"])) if ends else ([], [])
    check = verify_report(log)
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "generated_at": utc_timestamp(),
        "format": fmt,
        "file": out.name,
        "sha256": file_checksum(out),
        "since": utc_timestamp(since) if since else None,
        "until": utc_timestamp(until) if until else None,
        "record_count": count,
        "first_seq": first.get("seq"),
        "last_seq": last.get("seq"),
        "first_prev_hash": first.get("prev_hash"),
        "first_hash": first.get("hash"),
        "last_hash": last.get("hash"),
        "columns": list(COLUMNS),
        "public_key": log.verifier.pem() if log.verifier else None,
        "key_id": log.verifier.key_id if log.verifier else None,
        "checkpoints": checkpoints,
        "seals": seals,
        "chain": {
            "algorithm": "sha256 over canonical JSON (sorted keys, no spaces, ASCII) of every "
            "field except `hash`; `prev_hash` of seq 1 is 64 zeros",
            "genesis_hash": GENESIS_HASH,
            "signatures": "Ed25519 (meshcore/seals/checkpoints.py): checkpoints; commit seals over "
            "'civicmesh-access-log-seal:v1|{first_seq}|{seq}|{hash}'; this manifest over its "
            "canonical JSON without `manifest_signature`",
            "store_verified": check.ok,
            "store_head": check.head,
            "store_first_bad": check.first_bad,
            "store_problem": check.problem,
            "sealed_in_sink_up_to": check.sealed,
        },
    }
    if log.signer is not None:
        sign_manifest(log.signer, manifest)
    return manifest


def _parse_csv_row(values: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in COLUMNS:
        text = values[name]
        if text == "" and name in _NULLABLE:
            row[name] = None
        elif name in _INTS:
            row[name] = int(text)
        elif name in _FLOATS:
            row[name] = float(text)
        else:
            row[name] = text
    return row


def read_export(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        if fmt == "jsonl":
            for line in handle:
                if line.strip():
                    yield json.loads(line)
        else:
            for values in csv.DictReader(handle):
                yield _parse_csv_row(values)


def _signatures(manifest: dict[str, Any], verifier: Verifier) -> tuple[list[str], list[Checkpoint]]:
    """Problems with the manifest's and its checkpoints' signatures, and the valid checkpoints."""
    problems: list[str] = []
    signature = manifest.get("manifest_signature")
    if not isinstance(signature, str) or not verifier.verify(signature, _manifest_payload(manifest)):
        problems.append(f"the manifest's signature is missing or not made by key {verifier.key_id}")
    valid: list[Checkpoint] = []
    for data in manifest.get("checkpoints") or ():
        try:
            cp = Checkpoint.from_dict(data)
        except (ValueError, AttributeError) as exc:
            problems.append(f"a checkpoint in the manifest is malformed: {exc}")
            continue
        if cp.signed_by(verifier):
            valid.append(cp)
        else:
            problems.append(f"checkpoint #{cp.index} (seq {cp.seq}): bad signature")
    return problems, sorted(valid, key=lambda cp: cp.seq)


def _seal_run(manifest: dict[str, Any], verifier: Verifier, start: int) -> SealRun:
    seals = {int(s["seq"]): (int(s["first_seq"]), str(s["signature"])) for s in manifest.get("seals") or ()}
    # The commit holding the first exported record may have begun before the export.
    first = next((f for seq, (f, _) in sorted(seals.items()) if seq >= start), start)
    return SealRun(seals, verifier, min(start, first))


def verify_export(export: Path, manifest: dict[str, Any], verifier: Verifier | None = None) -> list[str]:
    """Problems found checking an export against its manifest, with no database (empty = valid).

    Without a verifier: the file's integrity, the chain inside it and its ends, and that the store
    verified when it was exported (else the export may stop at a hole). With the public key also
    the manifest's signature, the checkpoints' signatures, each record against the digest its
    checkpoint sealed (naming the first record that differs) and the commit seals after them."""
    problems: list[str] = []
    if file_checksum(export) != manifest.get("sha256"):
        problems.append("the file's sha256 differs from the manifest")
    chain = manifest.get("chain") or {}
    if chain.get("store_verified") is not True:  # the export may stop at a hole: never complete
        problems.append(
            f"the stored log did not verify when this was exported (first bad seq "
            f"{chain.get('store_first_bad')} ({chain.get('store_problem')})): it may be incomplete"
        )
    checkpoints: list[Checkpoint] = []
    if verifier is not None:
        found, checkpoints = _signatures(manifest, verifier)
        problems += found
    covered = max([0, *(cp.seq for cp in checkpoints)])
    start = max(int(manifest.get("first_seq") or 1), covered + 1)
    seals = _seal_run(manifest, verifier, start) if verifier is not None else None
    prev = manifest.get("first_prev_hash")
    expected = manifest.get("first_seq")
    count = 0
    last_hash = None
    for n, row in enumerate(read_export(export, manifest.get("format", "jsonl")), start=1):
        count = n
        problem = _row_problem(row, expected, prev, checkpoints)
        if problem is None and seals is not None and int(row["seq"]) >= start:
            bad = seals.step(int(row["seq"]), row["hash"])
            problem = None if bad is None else f"record {bad[0]}: {bad[1]} (forged)"
        if problem is not None:
            problems.append(problem)
            break
        prev = last_hash = row["hash"]
        expected = int(row["seq"]) + 1
    else:
        if count != manifest.get("record_count"):
            problems.append(f"{count} records, manifest says {manifest.get('record_count')}")
        if last_hash != manifest.get("last_hash"):
            problems.append("the last record's hash differs from the manifest")
        unsigned = (
            seals.uncovered(int(manifest.get("last_seq") or 0)) if seals is not None and count else None
        )
        if unsigned is not None:
            problems.append(f"records from seq {unsigned} carry no signature (forged)")
    return problems


def _row_problem(
    row: dict[str, Any], expected: int | None, prev: str | None, checkpoints: list[Checkpoint]
) -> str | None:
    seq = int(row["seq"])
    if expected is not None and seq != expected:
        return f"seq {expected} expected, found {seq}"
    if row["prev_hash"] != prev:
        return f"record {seq} does not follow the previous record (prev_hash)"
    if chain_hash(row) != row["hash"]:
        return f"record {seq} does not match its hash (modified)"
    for cp in checkpoints:
        sealed = cp.digest_of(seq)
        if sealed is not None and sealed != record_digest(row["hash"]):
            return f"record {seq} differs from what checkpoint #{cp.index} sealed (modified)"
    return None
