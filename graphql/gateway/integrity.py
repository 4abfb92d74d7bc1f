"""Integrity when reading: a snapshot is served only while its file has the SHA-256 stored at publish.

Cost off the hot path: a process hashes a snapshot's file the first time it opens it (streaming,
in a worker thread; concurrent first reads share one hash; see bench/integrity.py for the cost on
a 1M-row snapshot) and then trusts it while the file's (size, mtime, inode, ctime) stay the same:
one `os.stat` per read (the ctime, which only the kernel sets, changes with any write, even one whose
mtime was set back with `os.utime`). A file rewritten or truncated after its check is hashed again
on its next read; so is a snapshot the catalog marks broken (another gateway or `civicmesh
snapshots verify` found it), once per mark: a hash that found the file intact answers the mark the
reads that started it saw (never one made since), and only once that mark is lifted are later reads
showing it (a catalog view lags a lifted mark by up to a poll) trusted. A failed check is remembered
for `retry_seconds` (a broken file is not re-hashed per request).

A mismatch is never served: the read or export fails with `UNAVAILABLE` naming the product (never
the file), the request's access-log record carries that code, the server log names the file, and
the snapshot is marked broken in the catalog, which makes every gateway's `/readyz` fail (the
`snapshots` check) until the file verifies again (the mark is lifted) or the snapshot is withdrawn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import anyio.to_thread

from gateway.errors import UNAVAILABLE, GovernedError
from gateway.readiness import CheckResult
from meshcore.catalog import Catalog, Snapshot
from meshcore.snapshots import integrity_problem

log = logging.getLogger(__name__)

RETRY_SECONDS = 30.0
DETECTED_BY = f"gateway {socket.gethostname()} pid {os.getpid()}"

FileStat = tuple[int, int, int, int]  # size, mtime (ns), inode, ctime (ns)
Mark = tuple[str, datetime | None]  # a catalog broken mark: (detail, when marked)


def file_stat(path: str) -> FileStat | None:
    """The state a check holds a file to (None if it cannot be stat'ed): any write changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


class FileChecks:
    """This process's checksum checks, keyed by snapshot id. Used on the event loop only (no lock)."""

    def __init__(self, retry_seconds: float = RETRY_SECONDS) -> None:
        self.retry_seconds = retry_seconds
        self._ok: dict[str, FileStat] = {}
        # Real path -> the file's stat when it last hashed right: what a copy of it may be built
        # from (`DuckPool.source`), however long after the check the build runs.
        self.verified: dict[str, FileStat] = {}
        self._failed: dict[str, tuple[FileStat | None, float, str]] = {}  # id -> (stat, when, detail)
        # Reads that see another mark (or none) do not share a hash: it may have read the file
        # before what a newer mark found.
        self._pending: dict[tuple[str, FileStat | None, Mark | None], asyncio.Future[str | None]] = {}
        self.unrecorded: dict[str, str] = {}  # failures not yet marked in the catalog: id -> product
        self.hashed: Counter[str] = Counter()  # snapshot id -> times its file was hashed here
        # Snapshot id -> the broken mark a fresh hash here found intact and `ensure_intact` lifted.
        # The catalog view a request holds lags a lifted mark by up to a poll: without this every
        # read in that window would hash the whole file again.
        self._answered: dict[str, Mark] = {}

    async def problem(self, snap: Snapshot) -> tuple[str | None, bool]:
        """(what is wrong with `snap`'s file or None, whether it was hashed just now)."""
        path = str(snap.path)  # os.stat follows links itself: one system call on the hot path
        stat = file_stat(path)
        if stat is not None and self._ok.get(snap.id) == stat and self._trusts_mark(snap):
            return None, False
        failed = self._failed.get(snap.id)
        if failed is not None and failed[0] == stat and time.monotonic() - failed[1] < self.retry_seconds:
            return failed[2], False
        key = (snap.id, stat, _mark(snap))
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._check(snap, path, stat))
            self._pending[key] = future
            future.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(future), True

    def answered(self, snap: Snapshot) -> None:
        """Record that `snap`'s mark was lifted after a fresh hash here found its file intact: later
        reads still showing that mark trust the file while its stat holds. Called only once the
        mark is off the catalog (a mark left standing, e.g. by a cancelled read, is hashed again)."""
        mark = _mark(snap)
        if mark is not None:
            self._answered[snap.id] = mark

    def _trusts_mark(self, snap: Snapshot) -> bool:
        """Whether `snap` is unmarked or shows a mark already answered here (a mark from another
        process or `snapshots verify` forces a fresh hash: bit rot leaves the stat alone). A mark
        without a time cannot be told from the same mark made again: never trusted."""
        mark = _mark(snap)
        return mark is None or (mark[1] is not None and self._answered.get(snap.id) == mark)

    async def _check(self, snap: Snapshot, path: str, stat: FileStat | None) -> str | None:
        self.hashed[snap.id] += 1
        detail = await anyio.to_thread.run_sync(integrity_problem, Path(path), snap.checksum, snap.byte_size)
        if detail is None:
            self._ok[snap.id] = stat  # type: ignore[assignment]  # a file that hashed has a stat
            self.verified[os.path.realpath(path)] = stat  # type: ignore[assignment]
            self._failed.pop(snap.id, None)
        else:
            self._ok.pop(snap.id, None)
            self._failed[snap.id] = (stat, time.monotonic(), detail)
        return detail


def _mark(snap: Snapshot) -> Mark | None:
    """`snap`'s broken mark as (detail, when marked), None while unmarked: a mark made again,
    even with the same detail, is a new one."""
    return None if snap.broken is None else (snap.broken, snap.broken_at)


async def ensure_intact(checks: FileChecks, catalog: Catalog, snap: Snapshot) -> None:
    """Return if `snap` may be served; else mark it broken in `catalog`, log it, and raise
    UNAVAILABLE. `checks` is the process's file checks (`DuckPool.checks`)."""
    detail, fresh = await checks.problem(snap)
    if detail is None:
        if fresh and snap.broken is not None:  # restored since it was marked: lift that mark only
            await _lift(checks, catalog, snap)
        return
    if fresh or snap.id in checks.unrecorded:
        log.error("snapshot %s of %s is not served: %s (file %s)", snap.id, snap.product, detail, snap.path)
        try:
            await anyio.to_thread.run_sync(catalog.mark_broken, snap.id, detail, DETECTED_BY)
            checks.unrecorded.pop(snap.id, None)
        except Exception:  # still refused; retried on the next read, and /readyz fails meanwhile
            checks.unrecorded[snap.id] = snap.product
            log.exception("could not mark snapshot %s broken in the catalog", snap.id)
    raise GovernedError(
        f"{snap.product} cannot be served right now: its data failed an integrity check.", UNAVAILABLE
    )


async def _lift(checks: FileChecks, catalog: Catalog, snap: Snapshot) -> None:
    """Lift the mark `snap` shows, its file having just hashed intact. If the store refuses the
    write, the file is still served (a fresh hash vouches for it) and the mark stays unanswered:
    the next read hashes again and retries the lift, and `/readyz` fails while the mark stands."""
    lift = functools.partial(catalog.clear_broken, snap.id, marked_at=snap.broken_at)
    try:
        lifted = await anyio.to_thread.run_sync(lift)
    except Exception:
        log.exception(
            "snapshot %s of %s verifies again, but its broken mark could not be lifted", snap.id, snap.product
        )
        return
    if lifted:
        log.warning("snapshot %s of %s verifies again; broken mark lifted", snap.id, snap.product)
    checks.answered(snap)


def snapshots_check(catalog: Catalog, checks: FileChecks) -> CheckResult:
    """The `snapshots` readiness check: fails while any snapshot that could be served is marked
    broken in the catalog, or this process found one it could not mark there."""
    broken = {s.id: f"{s.product} ({s.id}): {s.broken}" for s in catalog.broken_snapshots()}
    for snapshot_id, product in checks.unrecorded.items():
        broken.setdefault(snapshot_id, f"{product} ({snapshot_id}): failed its checksum check")
    if broken:
        return CheckResult(False, "broken snapshots: " + "; ".join(sorted(broken.values())))
    return CheckResult(True, "no broken snapshots")
