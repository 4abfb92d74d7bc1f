"""`civicmesh audit archive`: move sealed access-log records out of the store into archive segments.

Guarantees (format and layout: `meshcore.audit.archive`):

- **Only sealed records**: nothing moves unless the log, its checkpoints and the external sink
  verify (`verify_report`); a segment ends where a checkpoint *in the sink* ends, at or before the
  given time, and never at the store's newest record (the next append chains onto it).
- **Nothing lost, nothing twice**: each segment is written to a temporary file, fsynced and renamed,
  then its manifest the same way and the directory fsynced; only then are its records deleted from
  the store, in one transaction. A crash in between leaves both copies, which verification checks
  agree; the next run deletes the stored copies first and archives from the archive's end on.
- One run at a time per archive directory (an exclusive lock; a second run is refused).
- Commit seals of archived records are deleted with them: the checkpoint that ends the segment
  seals each of its records (verification checks commit seals only after the newest checkpoint).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, select

from meshcore.accesslog import AccessLog, access_log_table, chain_hash, seals_table
from meshcore.audit.archive import COLUMNS, KEPT_ACTIONS, Segment, read_segments, segment_name
from meshcore.audit.verify import trusted_checkpoints, verify_report
from meshcore.seals.checkpoints import Checkpoint
from meshcore.snapshots import file_checksum, fsync_dir

SEGMENT_RECORDS = 100_000  # records per archive file (whole checkpoints: up to 4,096 more)


class ArchiveRefused(RuntimeError):
    """Nothing (more) was archived; the message says why."""


@dataclass
class ArchiveReport:
    segments: list[Segment] = field(default_factory=list)
    finished: int = 0  # stored copies deleted that an interrupted run had already archived


def archive_sealed(
    log: AccessLog,
    before: str | None = None,
    *,
    segment_records: int = SEGMENT_RECORDS,
    written: Callable[[Segment], object] | None = None,
) -> ArchiveReport:
    """Archive the sealed records (stamped before `before`, a `utc_timestamp`, if given) and
    delete them from the store. `written(segment)` runs between writing a segment and deleting
    its records (a fault-injection point for tests). Raises ArchiveRefused."""
    if log.archive_dir is None or log.verifier is None or log.sink is None:
        raise ArchiveRefused("archiving needs the public key, the checkpoint sink and an archive directory")
    check = verify_report(log)
    if not check.ok:
        raise ArchiveRefused(
            f"the access log does not verify (first bad seq {check.first_bad}: {check.problem}); "
            "nothing archived: run `civicmesh audit verify`"
        )
    with _one_run(log.archive_dir):
        segments = read_segments(log.archive_dir)
        report = ArchiveReport(finished=_delete_stored(log, segments[-1].last_seq) if segments else 0)
        start = segments[-1].last_seq + 1 if segments else 1
        limit = min(check.sealed, check.head - 1, _stamped_before(log, before))
        for first, cp in _plan(log, start, limit, segment_records):
            segment = _write(log, log.archive_dir, first, cp)
            if written is not None:
                written(segment)
            _delete_stored(log, segment.last_seq)
            report.segments.append(segment)
    return report


@contextlib.contextmanager
def _one_run(directory: Path) -> Iterator[None]:
    """An exclusive lock on the archive directory for one run; another run at the same time is
    refused (it would plan the same segments)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ArchiveRefused(f"another `audit archive` is running on {directory}") from exc
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _stamped_before(log: AccessLog, before: str | None) -> int:
    """The last seq stamped before `before` (every seq when None)."""
    t = access_log_table
    query = select(func.max(t.c.seq))
    if before is not None:
        query = query.where(t.c.ts < before)
    with log.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def _plan(log: AccessLog, start: int, limit: int, size: int) -> list[tuple[int, Checkpoint]]:
    """(first seq, ending checkpoint) of each segment from `start` to at most `limit`, cut at the
    ends of checkpoints in the sink, each of about `size` records."""
    assert log.verifier is not None
    trusted = trusted_checkpoints(log, log.verifier, log.sink, [])
    ends = [trusted.by_index[i] for i in sorted(trusted.in_sink) if start <= trusted.by_index[i].seq <= limit]
    plan: list[tuple[int, Checkpoint]] = []
    first, last = start, None
    for cp in ends:
        if last is not None and cp.seq - first + 1 > size:
            plan.append((first, last))
            first = last.seq + 1
        last = cp
    if last is not None:
        plan.append((first, last))
    return plan


def _write(log: AccessLog, directory: Path, first: int, cp: Checkpoint) -> Segment:
    """Write records first..cp.seq (checked again as they are read) and their manifest, durably."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(first, cp.seq)
    part = path.with_name(path.name + ".part")
    expected, prev, max_ts, first_prev = first, None, "", ""
    with part.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        for row in log.rows(after_seq=first - 1):
            seq = int(row["seq"])
            if seq > cp.seq:
                break
            if (
                seq != expected
                or (prev is not None and row["prev_hash"] != prev)
                or chain_hash(row) != row["hash"]
            ):
                raise ArchiveRefused(f"record {expected} changed while archiving; nothing more archived")
            first_prev = first_prev or row["prev_hash"]
            handle.write((json.dumps({c: row[c] for c in COLUMNS}, separators=(",", ":")) + "\n").encode())
            prev, max_ts, expected = row["hash"], max(max_ts, row["ts"]), seq + 1
        handle.close()
        raw.flush()
        os.fsync(raw.fileno())
    if expected != cp.seq + 1 or prev != cp.hash:
        part.unlink()
        raise ArchiveRefused(
            f"records {first}..{cp.seq} do not end in checkpoint #{cp.index}; nothing archived"
        )
    os.replace(part, path)
    segment = Segment(
        path=path,
        first_seq=first,
        last_seq=cp.seq,
        record_count=cp.seq - first + 1,
        first_prev_hash=first_prev,
        last_hash=cp.hash,
        max_ts=max_ts,
        sha256=file_checksum(path),
        checkpoint={"index": cp.index, "seq": cp.seq, "hash": cp.hash},
    )
    _write_json(segment.manifest_path, segment.manifest())
    fsync_dir(directory)
    return segment


def _write_json(path: Path, data: dict[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    with part.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, path)


def _delete_stored(log: AccessLog, upto: int) -> int:
    """Delete the archived records up to `upto` (but the kept ones) and their commit seals, in one
    transaction; returns how many records went."""
    t = access_log_table
    with log.engine.begin() as conn:
        log.lock(conn)
        gone = conn.execute(delete(t).where(and_(t.c.seq <= upto, t.c.action.not_in(KEPT_ACTIONS))))
        conn.execute(delete(seals_table).where(seals_table.c.seq <= upto))
    return int(gone.rowcount or 0)
