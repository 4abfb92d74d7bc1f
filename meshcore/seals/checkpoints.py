"""Signed, chained checkpoints of the access log, and the per-commit seals between them.

**Commit seal** — every commit of access-log records signs its span and its last record's hash:
`Ed25519(b"civicmesh-access-log-seal:v1|{first_seq}|{last_seq}|{hash}")`, stored in the metadata
store. Seals tile the log: each record belongs to exactly one sealed commit, so a record appended
by someone without the private key (even one a later commit chained onto) is in no seal's span.

**Checkpoint** — every N records, every T seconds and at shutdown the writer seals the records
since the previous checkpoint. One checkpoint is a JSON object:

    {"v": 1, "index": k, "first_seq": a, "seq": b, "hash": <chain hash of record b>,
     "digests": <the first 16 hex digits of the chain hash of every record a..b, concatenated>,
     "prev": <sha256 of checkpoint k-1 (64 zeros for k = 1)>, "ts": ISO-8601 UTC,
     "reason": "count" | "interval" | "shutdown" | "migration", "key_id": <16 hex>,
     "signature": Ed25519 over the canonical JSON of every other field}

Canonical JSON: sorted keys, no spaces, ASCII. `digest()` is SHA-256 over the canonical JSON of
the whole checkpoint, signature included; `prev` chains each checkpoint to the one before, so a
checkpoint removed from the sink leaves a gap (`index`) and a broken link (`prev`). The per-record
digests let a verifier name the *first* record that differs from what was sealed, even when every
later hash was recomputed (16 hex digits = 64 bits: the full head `hash` already detects any change
in the range; the digests only locate it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from meshcore.seals.signing import Signer, Verifier

VERSION = 1
GENESIS = "0" * 64
DIGEST_HEX = 16
REASONS = ("count", "interval", "shutdown", "migration")
_SEAL_PREFIX = b"civicmesh-access-log-seal:v1|"


def seal_message(first_seq: int, seq: int, chain_hash: str) -> bytes:
    """The bytes a commit seal signs: the commit's first and last sequence numbers and the chain
    hash of its last record (which pins every record before it)."""
    return _SEAL_PREFIX + f"{first_seq}|{seq}|{chain_hash}".encode()


class SealRun:
    """Checks, record by record in seq order from `start`, that commit seals tile the records:
    each seal covers exactly the records since the previous one and its signature verifies.

    `trusted` holds seals this process made itself ((first, last, hash) it signed): matched
    exactly, they need no signature check."""

    def __init__(
        self,
        seals: dict[int, tuple[int, str]],
        verifier: Verifier,
        start: int,
        trusted: dict[int, tuple[int, str]] | None = None,
    ) -> None:
        self.seals = seals
        self.verifier = verifier
        self.start = start  # the first record not yet covered by a seal
        self.trusted = trusted or {}

    def step(self, seq: int, chain_hash: str) -> tuple[int, str] | None:
        """After record `seq`: None, or (first bad seq, why) when the seals do not cover it."""
        seal = self.seals.get(seq)
        if seal is None:
            return None  # inside a commit (or no seal at all: see `uncovered`)
        first, signature = seal
        span = f"record {seq}" if first == seq else f"records {first}..{seq}"
        if first > self.start:
            end = first - 1
            gap = f"record {self.start}" if end == self.start else f"records {self.start}..{end}"
            return self.start, f"{gap} carr{'y' if end > self.start else 'ies'} no signature"
        if first < self.start:
            return first, f"the seal of {span} overlaps records sealed before"
        if self.trusted.get(seq) != (first, chain_hash) and not self.verifier.verify(
            signature, seal_message(first, seq, chain_hash)
        ):
            return first, f"the signature of {span} does not match"
        self.start = seq + 1
        return None

    def uncovered(self, head: int) -> int | None:
        """The first record up to `head` that no seal covers, or None."""
        return self.start if self.start <= head else None


def record_digest(chain_hash: str) -> str:
    return chain_hash[:DIGEST_HEX]


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Checkpoint:
    index: int
    first_seq: int
    seq: int
    hash: str
    digests: str = field(repr=False)
    prev: str
    ts: str
    reason: str
    key_id: str
    signature: str
    v: int = VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def payload(self) -> bytes:
        """What the signature covers: every field but the signature."""
        body = self.as_dict()
        del body["signature"]
        return canonical(body)

    def digest(self) -> str:
        return hashlib.sha256(canonical(self.as_dict())).hexdigest()

    def digest_of(self, seq: int) -> str | None:
        """The sealed digest of record `seq`, or None if this checkpoint does not cover it."""
        if not self.first_seq <= seq <= self.seq:
            return None
        at = (seq - self.first_seq) * DIGEST_HEX
        return self.digests[at : at + DIGEST_HEX]

    def signed_by(self, verifier: Verifier) -> bool:
        return self.key_id == verifier.key_id and verifier.verify(self.signature, self.payload())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Raises ValueError naming what is wrong with a stored or delivered checkpoint."""
        try:
            cp = cls(
                index=int(data["index"]),
                first_seq=int(data["first_seq"]),
                seq=int(data["seq"]),
                hash=str(data["hash"]),
                digests=str(data["digests"]),
                prev=str(data["prev"]),
                ts=str(data["ts"]),
                reason=str(data["reason"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                v=int(data.get("v", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a checkpoint ({type(exc).__name__}: {exc})") from exc
        if cp.v != VERSION:
            raise ValueError(f"checkpoint format v{cp.v} is not v{VERSION}")
        if cp.seq < cp.first_seq or len(cp.digests) != (cp.seq - cp.first_seq + 1) * DIGEST_HEX:
            raise ValueError("its digests do not cover first_seq..seq")
        return cp


def make_checkpoint(
    signer: Signer,
    previous: Checkpoint | None,
    hashes: Sequence[tuple[int, str]],
    reason: str,
    ts: str,
) -> Checkpoint:
    """Seal `hashes` ((seq, chain hash) of consecutive records following `previous`)."""
    first = previous.seq + 1 if previous else 1
    seqs = [seq for seq, _ in hashes]
    if seqs != list(range(first, first + len(seqs))) or not seqs:
        raise ValueError(f"a checkpoint seals consecutive records from seq {first}")
    if reason not in REASONS:
        raise ValueError(f"unknown checkpoint reason {reason!r}")
    unsigned = Checkpoint(
        index=previous.index + 1 if previous else 1,
        first_seq=first,
        seq=hashes[-1][0],
        hash=hashes[-1][1],
        digests="".join(record_digest(h) for _, h in hashes),
        prev=previous.digest() if previous else GENESIS,
        ts=ts,
        reason=reason,
        key_id=signer.key_id,
        signature="",
    )
    return Checkpoint(**{**unsigned.as_dict(), "signature": signer.sign(unsigned.payload())})
