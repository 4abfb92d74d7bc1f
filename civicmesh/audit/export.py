"""`civicmesh audit export`: the access log of a period as CSV or JSONL, with a verification manifest.

The export holds every stored field of every record, exactly as chained (JSON fields as their stored
canonical text), so anyone can recompute the chain from the file alone: each record's `hash` is the
SHA-256 of the canonical JSON of its other fields (`civicmesh.accesslog.chain_hash`), and each
`prev_hash` is the previous record's `hash`. The manifest pins both ends of the range, the record
count, the signed checkpoints inside the range and the file's SHA-256; with the audit key, the
checkpoint signatures and the manifest's own signature can be checked too (`verify_export`).

A period is selected by time, but the chain is a sequence: the export covers the contiguous seq
range from the first to the last record stamped inside the period, so it has no holes (a record
stamped just outside the period may sit inside that range: writers stamp before they queue).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, select

from civicmesh.accesslog import (
    GENESIS_HASH,
    AccessLog,
    access_log_table,
    chain_hash,
    sign_checkpoint,
    utc_timestamp,
)

FORMATS = ("csv", "jsonl")
MANIFEST_VERSION = 1
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
        first, last = conn.execute(select(func.min(t.c.seq), func.max(t.c.seq)).where(*where)).one()
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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sign_manifest(key: bytes, manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_signature"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def export_log(
    log: AccessLog,
    out: Path,
    fmt: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Write the records of [since, until) to `out` and return the manifest (not yet written)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    span = seq_range(log, since, until)
    count = 0
    first_row: dict[str, Any] | None = None
    last_row: dict[str, Any] | None = None
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
                first_row = first_row or row
                last_row = row
                _write_row(handle, writer, fmt, row)
                count += 1
                expected += 1
    tmp.replace(out)
    checkpoints = []
    if first_row is not None and last_row is not None:
        checkpoints = [
            {k: cp[k] for k in ("seq", "hash", "ts", "signature")}
            for cp in log.checkpoints()
            if int(first_row["seq"]) <= int(cp["seq"]) <= int(last_row["seq"])
        ]
    check = log.verify_report()
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "generated_at": utc_timestamp(),
        "format": fmt,
        "file": out.name,
        "sha256": sha256_file(out),
        "since": utc_timestamp(since) if since else None,
        "until": utc_timestamp(until) if until else None,
        "record_count": count,
        "first_seq": int(first_row["seq"]) if first_row else None,
        "last_seq": int(last_row["seq"]) if last_row else None,
        "first_prev_hash": first_row["prev_hash"] if first_row else None,
        "first_hash": first_row["hash"] if first_row else None,
        "last_hash": last_row["hash"] if last_row else None,
        "columns": list(COLUMNS),
        "checkpoints": checkpoints,
        "chain": {
            "algorithm": "sha256 over canonical JSON (sorted keys, no spaces, ASCII) of every "
            "field except `hash`; `prev_hash` of seq 1 is 64 zeros",
            "genesis_hash": GENESIS_HASH,
            "store_verified": check.ok,
            "store_head": check.head,
            "store_first_bad": check.first_bad,
            "store_problem": check.problem,
        },
        "checkpoint_signature": "HMAC-SHA256(audit key, f'{seq}|{hash}|{ts}')",
    }
    if log.checkpoint_key is not None:
        manifest["manifest_signature"] = sign_manifest(log.checkpoint_key, manifest)
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


def verify_export(export: Path, manifest: dict[str, Any], key: str | None = None) -> list[str]:
    """Problems found checking an export against its manifest, with no database (empty = valid).

    Without the audit key the file's integrity, the chain inside it and its ends are checked; with
    the key also the checkpoint signatures and the manifest's own signature."""
    problems: list[str] = []
    if sha256_file(export) != manifest.get("sha256"):
        problems.append("the file's sha256 differs from the manifest")
    marks = {int(cp["seq"]): cp for cp in manifest.get("checkpoints") or ()}
    prev = manifest.get("first_prev_hash")
    expected = manifest.get("first_seq")
    count = 0
    last_hash = None
    for n, row in enumerate(read_export(export, manifest.get("format", "jsonl")), start=1):
        count = n
        seq = int(row["seq"])
        if expected is not None and seq != expected:
            problems.append(f"seq {expected} expected, found {seq}")
            break
        if row["prev_hash"] != prev:
            problems.append(f"record {seq} does not follow the previous record (prev_hash)")
            break
        if chain_hash(row) != row["hash"]:
            problems.append(f"record {seq} does not match its hash (modified)")
            break
        if seq in marks and marks[seq]["hash"] != row["hash"]:
            problems.append(f"record {seq} differs from its signed checkpoint")
            break
        prev = last_hash = row["hash"]
        expected = seq + 1
    else:
        if count != manifest.get("record_count"):
            problems.append(f"{count} records, manifest says {manifest.get('record_count')}")
        if last_hash != manifest.get("last_hash"):
            problems.append("the last record's hash differs from the manifest")
    if key is not None:
        raw = key.encode()
        for seq, cp in sorted(marks.items()):
            if not hmac.compare_digest(sign_checkpoint(raw, seq, cp["hash"], cp["ts"]), cp["signature"]):
                problems.append(f"checkpoint {seq}: bad signature")
        signature = manifest.get("manifest_signature")
        if signature is None or not hmac.compare_digest(sign_manifest(raw, manifest), signature):
            problems.append("the manifest's signature is missing or wrong")
    return problems


def now_utc() -> datetime:
    return datetime.now(UTC)
