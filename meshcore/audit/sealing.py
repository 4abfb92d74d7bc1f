"""Sealing: the records since the last checkpoint become a signed checkpoint in the external sink.

When (`Sealer`): every `every` records (the commit that reaches the count wakes the sealer thread),
every `interval_s` seconds while anything is unsealed, and at shutdown (`close()`). Any number of
processes may seal one store: a checkpoint is made under the store's write lock and extends the
head of the *sink's* chain, so there is one chain; the sink is written first, then the store's copy
(a crash in between is repaired by the next checkpoint, which copies what the store lacks).

Before signing, the sealer checks what it is about to seal: the sink's last checkpoint seals this
store's record at its seq (a sink holding another store's chain is refused, never extended or
silently left alone), the records continue the last checkpoint's chain, each matches its hash,
and commit seals tile them (records and commits this process wrote itself are recognised by their
hashes, without recomputing or a signature check).
If anything fails nothing is sealed (`SealRefused`, reported by `/readyz` through `last_error`): a
checkpoint must never bless a forged record.

Ordering without a long lock: the sink appends a checkpoint only if it follows the sink's last one
(compare-and-append, see sinks.py), so concurrent sealers cannot fork the chain; the store's copy
is then inserted in a short transaction. Cost on the request path: the commit seal (one Ed25519
signature per commit, ~50 µs) and, once per checkpoint, one short insert competing for the write
lock; the rest runs in the sealer thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, func, select

from meshcore.accesslog import (
    GENESIS_HASH,
    AccessLog,
    AccessLogUnavailable,
    chain_hash,
    checkpoints_table,
    insert_rows,
    utc_timestamp,
)
from meshcore.audit.verify import verify_legacy
from meshcore.seals.checkpoints import Checkpoint, SealRun, canonical, make_checkpoint
from meshcore.seals.signing import Signer
from meshcore.seals.sinks import CheckpointSink, SinkConflict
from meshcore.settings import Settings

log = logging.getLogger(__name__)

MAX_SPAN = 4096  # records per checkpoint (each adds 16 hex digits to it)
MAX_BATCH = 100_000  # records checked per round of `checkpoint()`
OWN_MAX = 200_000  # records of this process remembered until sealed


class SealRefused(RuntimeError):
    """The records since the last checkpoint (or the sink's chain) do not check out: nothing sealed."""


def _spans(items: Sequence[tuple[int, str]], size: int) -> Iterator[Sequence[tuple[int, str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Sealer:
    """Writes the checkpoints of one `AccessLog` (which must hold a signer and a sink)."""

    def __init__(
        self,
        access_log: AccessLog,
        *,
        every: int = 1000,
        interval_s: float = 60.0,
    ) -> None:
        if access_log.signer is None or access_log.sink is None:
            raise ValueError("sealing needs an access log with a signing key and a checkpoint sink")
        self.log = access_log
        self.signer: Signer = access_log.signer
        self.sink: CheckpointSink = access_log.sink
        self.every = every
        self.interval_s = interval_s
        self.last_error: str | None = None
        self._own: dict[int, tuple[int, str]] = {}  # last seq -> (first seq, hash) of own commits
        self._own_hashes: dict[int, str] = {}  # seq -> hash of own records
        self._own_lock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        access_log.listeners.append(self._committed)

    @classmethod
    def from_settings(cls, settings: Settings, access_log: AccessLog) -> Sealer:
        return cls(access_log, every=settings.checkpoint_every, interval_s=settings.checkpoint_interval_s)

    # -- triggers ----------------------------------------------------------------------------------

    def _committed(self, hashes: list[tuple[int, str]], checkpoint_seq: int) -> None:
        if not hashes:
            return
        with self._own_lock:
            self._own[hashes[-1][0]] = (hashes[0][0], hashes[-1][1])
            self._own_hashes.update(hashes)
            if len(self._own_hashes) > OWN_MAX:  # a sealer that cannot seal: forget the oldest
                self._forget(sorted(self._own_hashes)[OWN_MAX // 2])
        if hashes[-1][0] - checkpoint_seq >= self.every:
            self._wake.set()

    def _forget(self, upto: int) -> None:
        """Under `_own_lock`: drop what is remembered of own records up to seq `upto`."""
        self._own = {s: v for s, v in self._own.items() if s > upto}
        self._own_hashes = {s: h for s, h in self._own_hashes.items() if s > upto}

    def start(self) -> Sealer:
        """Seal in a background thread at the count and the interval, until `close()`."""
        self._thread = threading.Thread(target=self._run, name="civicmesh-sealer", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            self.seal("count" if woke else "interval")

    def close(self) -> None:
        """Stop the thread and seal what is left ("shutdown")."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.seal("shutdown")
        self.detach()

    def detach(self) -> None:
        """Stop following the log's commits."""
        if self._committed in self.log.listeners:
            self.log.listeners.remove(self._committed)

    def status(self) -> tuple[bool, str]:
        """(ok, detail) for a readiness check: not ok while the newest records cannot be sealed."""
        if self.last_error is not None:
            return False, f"access log not sealed: {self.last_error}"
        return (
            True,
            f"checkpoints to {self.sink.location} every {self.every} records or {self.interval_s:g} s",
        )

    def seal(self, reason: str) -> list[Checkpoint]:
        """`checkpoint(reason)`, logging instead of raising (for the thread and shutdown)."""
        try:
            return self.checkpoint(reason)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("access log not sealed: %s", self.last_error)
            return []

    # -- one checkpoint ----------------------------------------------------------------------------

    def checkpoint(self, reason: str, *, legacy: bool = False) -> list[Checkpoint]:
        """Seal every record since the last checkpoint; returns the checkpoints written ([] if
        nothing was new). `legacy`: records of a log written before signing (checked by the
        caller) need no commit seals. Raises SealRefused, SinkError or a store error."""
        with self._seal_lock:
            self.last_error = None
            written: list[Checkpoint] = []
            head = self.log.head()  # what is there now; later records are for the next checkpoint
            for _ in range(100):  # rounds: other sealers, and at most MAX_BATCH records each
                previous = self._sink_head()
                hashes = self._sealable(previous, legacy, head)
                if not hashes:
                    break
                done = self._commit(previous, hashes, "migration" if legacy else reason)
                written += done
                if done:
                    with self._own_lock:
                        self._forget(done[-1].seq)
            return written

    def _sink_head(self) -> Checkpoint | None:
        data = self.sink.last()
        if data is None:
            return None
        try:
            head = Checkpoint.from_dict(data)
        except ValueError as exc:
            raise SealRefused(f"the last entry of the checkpoint sink {self.sink.location}: {exc}") from exc
        if not head.signed_by(self.signer.verifier):
            raise SealRefused(
                f"the last checkpoint in {self.sink.location} is not signed by this key "
                f"({self.signer.key_id}): refusing to extend its chain"
            )
        return head

    def _sealable(self, previous: Checkpoint | None, legacy: bool, head: int) -> list[tuple[int, str]]:
        """(seq, hash) of the records after `previous` up to `head` (at most MAX_BATCH, ending where
        a commit ends), checked; raises SealRefused."""
        after = previous.seq if previous else 0
        stored = self.log.checkpoints(after_index=previous.index if previous else 0)
        now = self._sink_head() if stored else None
        if stored and (now is None or now.index < stored[-1]["idx"]):  # not just another sealer
            raise SealRefused(
                f"the store holds checkpoint #{stored[-1]['idx']} but the sink {self.sink.location} ends "
                f"at #{now.index if now else 0}: it was truncated or replaced; restore it"
            )
        if stored:
            return []  # another sealer extended the chain meanwhile: start again from its head
        if previous is not None:
            self._check_sink_head(previous)
        links = self.log.links(after, min(MAX_BATCH, head - after)) if head > after else []
        if not links:
            return []
        with self._own_lock:
            own, own_hashes = dict(self._own), dict(self._own_hashes)
        foreign = {seq for seq, _, h in links if own_hashes.get(seq) != h}
        rows = (
            {int(r["seq"]): r for r in self.log.rows(after_seq=after) if int(r["seq"]) in foreign}
            if foreign
            else {}
        )
        seals = SealRun(self.log.seals(after, links[-1][0]), self.signer.verifier, after + 1, own)
        prev_hash = previous.hash if previous else GENESIS_HASH
        for expected, (seq, prev, hash_) in enumerate(links, start=after + 1):
            problem = None
            if seq != expected:
                problem = f"record {expected} is missing"
            elif prev != prev_hash or (seq in foreign and chain_hash(rows[seq]) != hash_):
                problem = f"record {seq} does not match its hash or the chain before it"
            elif not legacy and (bad := seals.step(seq, hash_)) is not None:
                problem = bad[1]
            if problem is not None:
                raise SealRefused(f"not sealing the access log: {problem}; run `civicmesh audit verify`")
            prev_hash = hash_
        unsealed = None if legacy else seals.uncovered(links[-1][0])
        if unsealed is not None and head - after > MAX_BATCH:  # this round cut a commit: stop before it
            links = links[: unsealed - after - 1]
            unsealed = None if links else unsealed
        if unsealed is not None:  # the newest records: no commit seal covers them
            raise SealRefused(f"not sealing the access log: records from seq {unsealed} carry no signature")
        return [(seq, hash_) for seq, _, hash_ in links]

    def _check_sink_head(self, previous: Checkpoint) -> None:
        """The sink's last checkpoint must seal this store's record at its seq, or SealRefused.

        A sink holding another log's chain (two metadata stores configured with one sink, e.g. one
        home's default) would otherwise be extended with records it never sealed, or, while this
        log is shorter than that chain, leave every record of this one unsealed without a word.
        A record moved to the archive (`audit archive`) is vouched for by its successor, which the
        archive never takes: it must link to the checkpoint's hash."""
        found = self.log.links(previous.seq - 1, 1)
        if found and found[0][0] == previous.seq and found[0][2] == previous.hash:
            return
        if found and found[0][0] == previous.seq + 1 and found[0][1] == previous.hash:
            return
        ours = (
            f"this store's record {previous.seq} has hash {found[0][2][:16]}"
            if found and found[0][0] == previous.seq
            else f"this store has no record {previous.seq}"
        )
        raise SealRefused(
            f"not sealing the access log: the checkpoint sink {self.sink.location} ends with another "
            f"log's checkpoints (#{previous.index} seals record {previous.seq} with hash "
            f"{previous.hash[:16]}; {ours}): give each metadata store its own sink "
            "(CIVICMESH_AUDIT_SINK); if this store was changed, run `civicmesh audit verify`"
        )

    def _commit(
        self, previous: Checkpoint | None, hashes: list[tuple[int, str]], reason: str
    ) -> list[Checkpoint]:
        """Append checkpoints to the sink (each only if it follows the sink's last), then copy them
        into the store. [] if another sealer extended the chain first."""
        ts, written = utc_timestamp(), []
        for span in _spans(hashes, MAX_SPAN):
            cp = make_checkpoint(self.signer, previous, span, reason, ts)
            try:
                self.sink.append(cp.as_dict())
            except SinkConflict:
                break
            written.append(previous := cp)
        if written:
            self._copy_to_store(written)
        return written

    def _copy_to_store(self, written: list[Checkpoint]) -> None:
        """The store's copies, in one short transaction; sink checkpoints the store lacks (a
        crash between delivery and copy) are copied first."""
        with self.log.engine.begin() as conn:
            self.log.lock(conn)
            last = conn.execute(select(func.max(checkpoints_table.c.idx))).scalar() or 0
            missing = [] if last >= written[0].index - 1 else self._from_sink(last, written[0].index)
            for cp in [*missing, *written]:
                if cp.index > last:
                    _store(conn, cp)

    def _from_sink(self, after_index: int, before_index: int) -> list[Checkpoint]:
        found = []
        for entry in self.sink.read():
            cp = Checkpoint.from_dict(entry.data) if entry.data else None
            if (
                cp is not None
                and after_index < cp.index < before_index
                and cp.signed_by(self.signer.verifier)
            ):
                found.append(cp)
        return found


def _store(conn: Connection, cp: Checkpoint) -> None:
    insert_rows(
        conn, checkpoints_table, [{"idx": cp.index, "seq": cp.seq, "body": canonical(cp.as_dict()).decode()}]
    )


def seal_legacy(access_log: AccessLog, legacy_key: str | None) -> list[Checkpoint]:
    """Seal a log written before Ed25519 signing (no seal and no checkpoint yet), once its hash
    chain — and, with the old CIVICMESH_AUDIT_KEY, its HMAC checkpoints — verify. A log that does
    not verify is never sealed: raises AccessLogUnavailable naming the first bad record."""
    # Existence checks (limit 1): every start runs them, and a sealed log holds many of both.
    if access_log.checkpoints(limit=1) or access_log.seals(limit=1) or access_log.head() == 0:
        return []
    check = verify_legacy(access_log, legacy_key)
    if not check.ok:
        raise AccessLogUnavailable(
            f"the access log written before signing does not verify (first bad seq {check.first_bad}: "
            f"{check.problem}: {check.detail}); it was not sealed — run `civicmesh audit verify`"
        )
    sealer = Sealer(access_log)
    try:
        return sealer.checkpoint("migration", legacy=True)
    finally:
        sealer.detach()


def open_log(settings: Settings) -> AccessLog:
    """The access log of a writing process: signed, with its sink, an older log sealed first."""
    access_log = AccessLog.from_settings(settings)
    seal_legacy(access_log, settings.legacy_audit_key)
    return access_log
