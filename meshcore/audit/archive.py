"""Archived segments of the access log: sealed records moved out of the store into compressed files.

Layout (`Settings.audit_archive_dir`, default `<home>/audit/archive/`): one segment per file,
`<first>-<last>.jsonl.gz` (sequence numbers zero-padded to 12 digits), gzip (RFC 1952) of one JSON
object per line holding every stored column of a record exactly as chained (the JSONL of
`civicmesh audit export`), and beside it `<file>.manifest.json`:

    {"v": 1, "file": <name>, "first_seq", "last_seq", "record_count", "first_prev_hash",
     "last_hash", "max_ts": <the latest `ts` in the segment>, "sha256": <of the file>,
     "checkpoint": {"index", "seq", "hash"}: the signed checkpoint that ends the segment}

A segment always ends where a checkpoint in the external sink ends, so only sealed records are
archived; the checkpoints (kept in the store and the sink) pin every archived record, so
`audit verify` reads the archive and the store as one chain (`ChainedRows`) with the public key.

Kept in the store as well (`KEPT_ACTIONS`): the administrative records that the policy in force and
rights as of a date are rebuilt from (`policies/versions.py`, `policies/history.py`); verification
checks that both copies agree and that none of them is gone from the store.

A period that reaches into the archive (`refuse_archived`) is refused with a message naming the
archived span: a query never returns part of a history as if it were all of it.
"""

from __future__ import annotations

import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from meshcore.accesslog import AccessLog, access_log_table, chain_hash, utc_timestamp
from meshcore.snapshots import file_checksum

VERSION = 1
SUFFIX = ".jsonl.gz"
MANIFEST_SUFFIX = ".manifest.json"
COLUMNS = tuple(c.name for c in access_log_table.columns)
# The actions policies/versions.py (LOADED, REJECTED) and policies/history.py (grants) read back.
KEPT_ACTIONS = ("policy_version", "policy_rejected", "approve", "revoke")


class ArchiveError(RuntimeError):
    """An archive file or manifest cannot be read; `seq` is the first record it concerns."""

    def __init__(self, message: str, seq: int = 0, problem: str = "archive unreadable") -> None:
        super().__init__(message)
        self.seq = seq
        self.problem = problem


class ArchivedPeriod(ValueError):
    """The period asked for reaches into archived records (the message names the span)."""


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"{first_seq:012d}-{last_seq:012d}{SUFFIX}"


@dataclass(frozen=True)
class Segment:
    """One archive file as its manifest describes it."""

    path: Path
    first_seq: int
    last_seq: int
    record_count: int
    first_prev_hash: str
    last_hash: str
    max_ts: str
    sha256: str
    checkpoint: dict[str, Any]

    @property
    def manifest_path(self) -> Path:
        return self.path.with_name(self.path.name + MANIFEST_SUFFIX)

    def manifest(self) -> dict[str, Any]:
        body = asdict(self)
        del body["path"]
        return {"v": VERSION, "file": self.path.name, **body}

    @classmethod
    def load(cls, manifest_path: Path) -> Segment:
        """Raises ArchiveError naming the manifest when it is not one."""
        name = manifest_path.name.removesuffix(MANIFEST_SUFFIX)
        first = int(name[:12]) if name[:12].isdigit() else 0
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
            if data.get("v") != VERSION or data.get("file") != name:
                raise ValueError(f"not a v{VERSION} manifest of {name}")
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k != "path"}
            if not all(type(fields[k]) is int for k in ("first_seq", "last_seq", "record_count")):
                raise ValueError("its sequence numbers are not integers")
            segment = cls(path=manifest_path.with_name(name), **fields)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArchiveError(f"archive manifest {manifest_path}: {exc}", first) from exc
        if segment_name(segment.first_seq, segment.last_seq) != name:
            raise ArchiveError(f"archive manifest {manifest_path} names another range", first)
        return segment

    def rows(self) -> Iterator[dict[str, Any]]:
        """The records of the file in the order stored; raises ArchiveError if it is missing,
        truncated or not gzip of JSON lines."""
        seq = self.first_seq
        try:
            with gzip.open(self.path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    row = json.loads(line)
                    seq = int(row["seq"]) + 1
                    yield row
        except FileNotFoundError as exc:
            raise ArchiveError(
                f"archive file {self.path} is missing (its manifest names records "
                f"{self.first_seq}..{self.last_seq})",
                self.first_seq,
                "archive missing",
            ) from exc
        except EOFError as exc:
            raise ArchiveError(
                f"archive file {self.path.name} is truncated after seq {seq - 1}", seq, "archive truncated"
            ) from exc
        except (OSError, zlib.error, ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(
                f"archive file {self.path.name} cannot be read after seq {seq - 1}: {exc}", seq
            ) from exc


def read_segments(directory: Path | None) -> list[Segment]:
    """The segments whose manifests are in `directory`, in seq order; raises ArchiveError for an
    unreadable manifest or two segments that overlap. A file without a manifest is the leftover of
    an interrupted `archive` run: not part of the archive (the next run rewrites it)."""
    if directory is None or not directory.is_dir():
        return []
    segments = sorted(
        (Segment.load(path) for path in directory.glob(f"*{SUFFIX}{MANIFEST_SUFFIX}")),
        key=lambda s: s.first_seq,
    )
    for before, after in itertools.pairwise(segments):
        if after.first_seq <= before.last_seq:
            raise ArchiveError(
                f"archive segments {before.path.name} and {after.path.name} overlap",
                after.first_seq,
                "archive out of order",
            )
    return segments


def refuse_archived(log: AccessLog, since: datetime | None) -> None:
    """Raise ArchivedPeriod when records stamped at or after `since` (None: from the beginning)
    may be archived, so a query of the store alone would be incomplete. Fails closed: an
    unreadable archive refuses every period."""
    try:
        segments = read_segments(log.archive_dir)
    except ArchiveError as exc:
        raise ArchivedPeriod(
            f"the access-log archive cannot be read ({exc}); run `civicmesh audit verify`"
        ) from exc
    if not segments:
        return
    newest = max(s.max_ts for s in segments)
    if since is None or utc_timestamp(since) <= newest:
        raise ArchivedPeriod(
            f"records 1..{segments[-1].last_seq} of the access log (stamped up to {newest}) are archived "
            f"in {log.archive_dir}: ask for a period from after {newest}, or read the archive files "
            "(gzip JSON lines; `civicmesh audit verify` checks them)"
        )


class ChainBroken(Exception):
    """The archive cannot be read on as a chain from here: (seq, problem, detail)."""

    def __init__(self, seq: int, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.seq, self.problem, self.detail = seq, problem, detail


class ChainedRows:
    """Every record in seq order: the archived segments, then the store's records after them.

    Store records at or below the archive's end (the kept administrative ones, and those of a run
    interrupted between writing and deleting) must equal their archived copies, and no kept one may
    be missing from the store; a file whose checksum differs from its manifest is noted in
    `problems` (the walk then names the record). Raises ChainBroken where reading cannot go on."""

    def __init__(self, log: AccessLog, segments: list[Segment]) -> None:
        self.log = log
        self.segments = segments
        self.problems: list[tuple[int, str, str]] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        upto = self.segments[-1].last_seq if self.segments else 0
        stored: dict[int, dict[str, Any]] = {}
        for row in self.log.rows() if upto else ():
            if int(row["seq"]) > upto:
                break
            stored[int(row["seq"])] = row
        for segment in self.segments:
            if segment.path.is_file() and file_checksum(segment.path) != segment.sha256:
                self.problems.append(
                    (
                        segment.first_seq,
                        "archive modified",
                        f"archive file {segment.path.name} differs from the sha256 in its manifest "
                        "(edited, truncated or re-compressed)",
                    )
                )
            yield from self._segment(segment, stored)
        yield from self.log.rows(after_seq=upto)

    def _segment(self, segment: Segment, stored: dict[int, dict[str, Any]]) -> Iterator[dict[str, Any]]:
        name, expected, ends = segment.path.name, segment.first_seq, ["", ""]
        try:
            for row in segment.rows():
                seq = int(row["seq"])
                if seq != expected:
                    raise ChainBroken(
                        expected,
                        "archive out of order",
                        f"archive file {name} holds seq {seq} where seq {expected} belongs "
                        "(records reordered, inserted or removed)",
                    )
                self._compare(row, stored.pop(seq, None), name)
                ends = [ends[0] or row["prev_hash"], row["hash"]]
                yield row
                expected += 1
        except ArchiveError as exc:
            raise ChainBroken(exc.seq, exc.problem, str(exc)) from exc
        if expected - 1 != segment.last_seq:
            raise ChainBroken(
                expected,
                "archive truncated",
                f"archive file {name} ends at seq {expected - 1}, its manifest at {segment.last_seq}",
            )
        if ends != [segment.first_prev_hash, segment.last_hash]:
            raise ChainBroken(
                segment.first_seq,
                "archive modified",
                f"the hashes at the ends of archive file {name} differ from its manifest",
            )

    @staticmethod
    def _compare(row: dict[str, Any], copy: dict[str, Any] | None, name: str) -> None:
        seq = int(row["seq"])
        if copy is None and row.get("action") in KEPT_ACTIONS:
            raise ChainBroken(
                seq,
                "deleted",
                f"record {seq} ({row['action']}) is archived in {name} but was deleted from the store, "
                "which keeps every such record",
            )
        if copy is not None and (copy["hash"] != row["hash"] or chain_hash(copy) != copy["hash"]):
            raise ChainBroken(
                seq, "modified", f"record {seq} in the store differs from its archived copy in {name}"
            )

    def where(self, seq: int, detail: str) -> str:
        """`detail` naming the archive file that holds `seq`, or saying that none does."""
        for segment in self.segments:
            if segment.first_seq <= seq <= segment.last_seq:
                name = segment.path.name
                return detail if name in detail else f"{detail} (archive file {name})"
        if self.log.archive_dir is None or "missing" not in detail:
            return detail
        return f"{detail} (from the store, and no archive segment in {self.log.archive_dir} holds them)"
