"""Verify the access log with the public key alone: records against their hash chain, the chain
against the signed checkpoints, the checkpoints against the external sink.

What is detected, and where it is reported (`Finding.seq`):

- a record edited (its hash no longer matches), deleted (a gap), moved (reordered): that record;
- a record edited, inserted or removed *and every later hash recomputed*: the first record whose
  hash differs from the digest a checkpoint sealed for it (exact), or, after the newest checkpoint,
  the first record of the commit whose seal no longer matches;
- records appended without the key (forged): the first of them (no valid commit seal);
- the newest records removed (truncation): the first missing one, as far as a checkpoint or a
  seal names it;
- a checkpoint deleted from the store or from the sink, forged, or different in the two: reported
  as a checkpoint finding naming the last record it seals.

Archived segments (`meshcore.audit.archive`) are read first, as the start of the same chain: a
file missing, truncated, edited, reordered or re-compressed with edits is reported with the file
named (`Finding.detail`) and the first record it concerns; a segment deleted together with its
manifest leaves a gap the walk reports as deleted records (the checkpoints still seal them).

Records after the last checkpoint in the sink are signed in the store only; `ChainCheck.unsealed`
says how many there are (removing *them* together with their seals cannot be detected yet).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from meshcore.accesslog import GENESIS_HASH, AccessLog, chain_problem, legacy_checkpoints_table
from meshcore.audit.archive import ArchiveError, ChainBroken, ChainedRows, read_segments
from meshcore.seals.checkpoints import GENESIS, Checkpoint, SealRun, record_digest
from meshcore.seals.signing import Verifier
from meshcore.seals.sinks import CheckpointSink, SinkError

_RECENT = 1024  # hashes of recent records kept to recognise a moved record


@dataclass(frozen=True)
class Finding:
    kind: str  # "record" | "checkpoint"
    seq: int  # the first bad record, or the last record the checkpoint seals
    problem: str  # modified | deleted | reordered | truncated | forged | checkpoint deleted | ...
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChainCheck:
    head: int  # the last sequence number read (up to the first bad record)
    findings: tuple[Finding, ...] = ()
    checkpoints: int = 0  # valid checkpoints in the sink (or the store, with no sink)
    sealed: int = 0  # records 1..sealed are sealed by checkpoints in the external sink
    signed: bool = False  # a public key was given: seals and checkpoints were checked
    key_id: str | None = None
    sink: str | None = None
    archived: int = 0  # records 1..archived were read from archive segments (meshcore.audit.archive)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The first bad record if any, else the first checkpoint problem."""
        records = [f for f in self.findings if f.kind == "record"]
        return min(records or self.findings, key=lambda f: f.seq, default=None)

    @property
    def first_bad(self) -> int | None:
        return self.first.seq if self.first else None

    @property
    def problem(self) -> str | None:
        return self.first.problem if self.first else None

    @property
    def detail(self) -> str:
        return self.first.detail if self.first else ""

    @property
    def last_checkpoint(self) -> int | None:
        return self.sealed or None

    @property
    def unsealed(self) -> int:
        return max(0, self.head - self.sealed)


@dataclass
class _Trusted:
    """Validly signed checkpoints by index, and which of them the sink holds."""

    by_index: dict[int, Checkpoint] = field(default_factory=dict)
    in_sink: set[int] = field(default_factory=set)

    def covering(self) -> list[Checkpoint]:
        return [self.by_index[i] for i in sorted(self.by_index)]

    def sealed(self) -> int:
        return max((self.by_index[i].seq for i in self.in_sink), default=0)

    def covered(self) -> int:
        return max((cp.seq for cp in self.by_index.values()), default=0)


def _checkpoint(data: dict[str, Any] | None, verifier: Verifier, where: str) -> Checkpoint | Finding:
    if data is None:
        return Finding("checkpoint", 0, "malformed checkpoint", f"{where} is not a JSON object")
    try:
        cp = Checkpoint.from_dict(data)
    except ValueError as exc:
        seq = data.get("seq")
        return Finding(
            "checkpoint", seq if isinstance(seq, int) else 0, "malformed checkpoint", f"{where}: {exc}"
        )
    if not cp.signed_by(verifier):
        return Finding(
            "checkpoint",
            cp.seq,
            "forged checkpoint",
            f"{where}: checkpoint #{cp.index} (seq {cp.seq}) is not signed by key {verifier.key_id}",
        )
    return cp


def _sink_checkpoints(
    sink: CheckpointSink, verifier: Verifier, findings: list[Finding]
) -> dict[int, Checkpoint]:
    """The sink's signed checkpoints; gaps and broken links in their chain become findings."""
    out: dict[int, Checkpoint] = {}
    prev: Checkpoint | None = None
    try:
        entries = sink.read()
    except SinkError as exc:
        findings.append(Finding("checkpoint", 0, "sink unreadable", str(exc)))
        return out
    for entry in entries:
        found = _checkpoint(entry.data, verifier, f"{sink.location} line {entry.position}")
        if isinstance(found, Finding):
            findings.append(found)
            continue
        cp = found
        expected = prev.index + 1 if prev else 1
        if cp.index in out or cp.index < expected:
            findings.append(
                Finding(
                    "checkpoint",
                    cp.seq,
                    "checkpoint chain broken",
                    f"checkpoint #{cp.index} appears twice "
                    f"or out of order in {sink.location} (line {entry.position})",
                )
            )
            continue
        if cp.index > expected:
            findings.append(
                Finding(
                    "checkpoint",
                    cp.first_seq - 1,
                    "checkpoint deleted",
                    f"checkpoint{'s' if cp.index - expected > 1 else ''} #{expected}"
                    f"{f'..#{cp.index - 1}' if cp.index - expected > 1 else ''} (sealing records up to "
                    f"seq {cp.first_seq - 1}) missing from the sink {sink.location}",
                )
            )
        elif cp.prev != (prev.digest() if prev else GENESIS) or cp.first_seq != (prev.seq + 1 if prev else 1):
            findings.append(
                Finding(
                    "checkpoint",
                    cp.seq,
                    "checkpoint chain broken",
                    f"checkpoint #{cp.index} in {sink.location} does not follow checkpoint #{cp.index - 1}",
                )
            )
        out[cp.index] = prev = cp
    return out


def _store_checkpoints(log: AccessLog, verifier: Verifier, findings: list[Finding]) -> dict[int, Checkpoint]:
    out: dict[int, Checkpoint] = {}
    for row in log.checkpoints():
        where = f"the store's checkpoint #{row['idx']}"
        try:
            data = json.loads(row["body"])
        except ValueError:
            data = None
        found = _checkpoint(data if isinstance(data, dict) else None, verifier, where)
        if isinstance(found, Finding):
            findings.append(found)
        elif (found.index, found.seq) != (int(row["idx"]), int(row["seq"])):
            findings.append(
                Finding("checkpoint", int(row["seq"]), "checkpoint modified", f"{where} was renumbered")
            )
        else:
            out[found.index] = found
    return out


def _compare(store: dict[int, Checkpoint], sink: dict[int, Checkpoint], where: str) -> Iterator[Finding]:
    for index in sorted(sink.keys() - store.keys()):
        cp = sink[index]
        yield Finding(
            "checkpoint",
            cp.seq,
            "checkpoint deleted",
            f"checkpoint #{index} (seq {cp.seq}) is in the external sink but was deleted from the store",
        )
    for index in sorted(store.keys() - sink.keys()):
        cp = store[index]
        yield Finding(
            "checkpoint",
            cp.seq,
            "checkpoint not in the sink",
            f"checkpoint #{index} (seq {cp.seq}) is in the store but not in the external sink {where}: "
            "it was removed from the sink, or never delivered",
        )
    for index in sorted(store.keys() & sink.keys()):
        if store[index].digest() != sink[index].digest():
            yield Finding(
                "checkpoint",
                sink[index].seq,
                "checkpoint modified",
                f"checkpoint #{index} differs between the store and the external sink",
            )


def trusted_checkpoints(
    log: AccessLog, verifier: Verifier, sink: CheckpointSink | None, findings: list[Finding]
) -> _Trusted:
    """Every validly signed checkpoint from the store and the sink (a signature cannot be forged,
    wherever it is kept); differences between the two and breaks in the sink's chain are findings."""
    store = _store_checkpoints(log, verifier, findings)
    if sink is None:
        return _Trusted(store, set())
    external = _sink_checkpoints(sink, verifier, findings)
    findings.extend(_compare(store, external, sink.location))
    return _Trusted({**store, **external}, set(external))


class _Walk:
    """One pass over the records: the chain, the sealed digests, and the commit seals after them."""

    def __init__(
        self, covering: list[Checkpoint], seals: dict[int, tuple[int, str]], verifier: Verifier | None
    ) -> None:
        self.covering = covering
        self.covered = covering[-1].seq if covering else 0
        self.seals = seals
        self.run_seals = SealRun(seals, verifier, self.covered + 1) if verifier is not None else None
        self.head = 0
        self.finding: Finding | None = None

    def run(self, rows: Iterable[dict[str, Any]]) -> None:
        expected, prev = 1, GENESIS_HASH
        recent: dict[str, int] = {}
        cp_at = 0
        for row in rows:
            seq = int(row["seq"])
            if seq != expected:  # a gap: the record expected here was deleted
                self._bad(expected, "deleted", f"records {expected}..{seq - 1} are missing")
                return
            self.head = seq
            problem = chain_problem(row, prev, recent)
            if problem is not None:
                self._bad(seq, *problem)
                return
            while cp_at < len(self.covering) and self.covering[cp_at].seq < seq:
                cp_at += 1
            if cp_at < len(self.covering) and not self._matches_seal(self.covering[cp_at], row):
                return
            if seq > self.covered and self.run_seals is not None:
                unsigned = self.run_seals.step(seq, row["hash"])
                if unsigned is not None:
                    self._bad(unsigned[0], "forged", f"{unsigned[1]}: written without the key")
                    return
            recent[row["hash"]] = seq
            if len(recent) > _RECENT:
                del recent[next(iter(recent))]  # dicts keep insertion order: drop the oldest
            prev = row["hash"]
            expected += 1

    def _bad(self, seq: int, problem: str, detail: str) -> None:
        self.finding = Finding("record", seq, problem, detail)

    def _matches_seal(self, cp: Checkpoint, row: dict[str, Any]) -> bool:
        seq = int(row["seq"])
        sealed = cp.digest_of(seq)
        if sealed is None or sealed == record_digest(row["hash"]):
            return True
        self._bad(
            seq,
            "modified",
            f"record {seq} differs from what checkpoint #{cp.index} sealed: this record, or one "
            "before it, was edited, inserted or removed and the chain recomputed",
        )
        return False

    def finish(self, trusted_seq: int) -> None:
        """After a complete pass: truncation, and records after the last seal."""
        if self.finding is not None:
            return
        named = max([trusted_seq, *self.seals], default=0) if self.run_seals is not None else trusted_seq
        if named > self.head:
            self._bad(
                self.head + 1,
                "truncated",
                f"the log ends at seq {self.head}, but a signature names seq {named}",
            )
            return
        start = self.run_seals.uncovered(self.head) if self.run_seals is not None else None
        if start is None:
            return
        span = f"records {start}..{self.head} carry" if start < self.head else f"record {start} carries"
        if not self.seals and not self.covering:  # nothing in this store was ever signed
            detail = (
                f"{span} no signature: written before signing was enabled (a writer with the key "
                "seals them once their chain checks out) or without the key"
            )
            self._bad(start, "not signed", detail)
        else:
            self._bad(start, "forged", f"{span} no signature: appended without the key")


def _walk_chain(walk: _Walk, log: AccessLog, trusted_seq: int, findings: list[Finding]) -> int:
    """Walk the archived segments and the store as one chain; findings in an archived record name
    its file. Returns the last archived seq (0: none)."""
    try:
        rows = ChainedRows(log, read_segments(log.archive_dir))
    except ArchiveError as exc:
        findings.append(Finding("record", exc.seq, exc.problem, str(exc)))
        rows = ChainedRows(log, [])
    try:
        walk.run(rows)
        walk.finish(trusted_seq)
    except ChainBroken as exc:
        walk.finding = Finding("record", exc.seq, exc.problem, exc.detail)
    findings.extend(Finding("record", seq, problem, detail) for seq, problem, detail in rows.problems)
    if walk.finding is not None:
        found = walk.finding
        findings.append(Finding(found.kind, found.seq, found.problem, rows.where(found.seq, found.detail)))
    return rows.segments[-1].last_seq if rows.segments else 0


def verify_log(
    log: AccessLog, verifier: Verifier | None = None, sink: CheckpointSink | None = None
) -> ChainCheck:
    """Check everything that can be checked with what is given (see the module docstring).

    Without a verifier only the hash chain is checked (nothing proves who wrote it)."""
    findings: list[Finding] = []
    trusted = trusted_checkpoints(log, verifier, sink, findings) if verifier else _Trusted()
    covering = trusted.covering()
    seals = log.seals(after_seq=trusted.covered()) if verifier else {}
    walk = _Walk(covering, seals, verifier)
    archived = _walk_chain(walk, log, trusted.covered(), findings)
    in_sink = len(trusted.in_sink) if sink is not None else len(trusted.by_index)
    return ChainCheck(
        head=walk.head,
        findings=tuple(findings),
        checkpoints=in_sink,
        sealed=trusted.sealed() if sink is not None else trusted.covered(),
        signed=verifier is not None,
        key_id=verifier.key_id if verifier else None,
        sink=sink.location if sink is not None else None,
        archived=archived,
    )


def verify_legacy(log: AccessLog, key: str | None) -> ChainCheck:
    """A log written before Ed25519 signing: the hash chain, and with the old HMAC key
    (CIVICMESH_AUDIT_KEY) its checkpoints, which name the head at every 100th record."""
    findings: list[Finding] = []
    marks: dict[int, str] = {}
    for cp in _legacy_checkpoints(log) if key else ():
        good = hmac.new(
            (key or "").encode(), f"{cp['seq']}|{cp['hash']}|{cp['ts']}".encode(), "sha256"
        ).hexdigest()
        if not hmac.compare_digest(good, cp["signature"]):
            findings.append(Finding("checkpoint", int(cp["seq"]), "forged checkpoint", "bad HMAC signature"))
        marks[int(cp["seq"])] = cp["hash"]
    walk = _Walk([], {}, None)
    walk.run(log.rows())
    walk.finish(0)
    if walk.finding is not None:
        findings.append(walk.finding)
    beyond = [seq for seq in marks if seq > walk.head]
    if beyond and walk.finding is None:
        findings.append(
            Finding("record", walk.head + 1, "truncated", f"an HMAC checkpoint names seq {max(beyond)}")
        )
    rows = {int(r["seq"]): r["hash"] for r in log.rows() if int(r["seq"]) in marks}
    for seq, value in sorted(marks.items()):
        if seq in rows and rows[seq] != value:
            findings.append(
                Finding("record", seq, "modified", f"record {seq} differs from its HMAC checkpoint")
            )
            break
    return ChainCheck(head=walk.head, findings=tuple(findings))


def _legacy_checkpoints(log: AccessLog) -> list[dict[str, Any]]:
    from sqlalchemy import inspect, select

    if not inspect(log.engine).has_table(legacy_checkpoints_table.name):
        return []
    with log.engine.connect() as conn:
        rows = conn.execute(select(legacy_checkpoints_table).order_by(legacy_checkpoints_table.c.seq))
        return [dict(r._mapping) for r in rows]


def verify_report(log: AccessLog) -> ChainCheck:
    """`log` against its chain; with its verifier, the seals and checkpoints against the public
    key; with its sink, the checkpoints against the sink. `.first_bad` is the first sequence number
    found bad (None: all is whole)."""
    return verify_log(log, log.verifier, log.sink)
