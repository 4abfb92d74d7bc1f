"""Delivers outboxed events to each transport, off the request path, with retries and back-off.

Per transport, events go out in outbox order and a failure stops that transport's batch at the
failed event (head-of-line), so events of one run always arrive in order. A failing transport is
retried after an exponentially growing, jittered delay and never raises into the caller; its events
simply stay pending. Other transports carry on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lineage.compaction import Compactor
from lineage.lease import LEASE_TTL_S, Holder
from lineage.outbox import Outbox
from lineage.transports import DeliveryError, Transport

log = logging.getLogger("civicmesh.lineage")


@dataclass
class _State:
    failures: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None
    delivered: int = 0
    rejected: int = 0


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        transports: Sequence[Transport],
        *,
        batch_size: int = 500,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        poll_interval: float = 1.0,
        lease_ttl: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        compactor: Compactor | None = None,
        compact_interval: float = 300.0,
    ) -> None:
        self.outbox = outbox
        self.transports = list(transports)
        self.batch_size = batch_size
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self.clock = clock
        self.state = {t.name: _State() for t in self.transports}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one delivery round at a time (background thread vs flush)
        # Fenced by process identity: if this process dies, another on this machine takes over at
        # once; elsewhere, the lease (renewed before every batch) runs out after `lease_ttl`.
        self.owner = Holder.current().owner()
        self.lease_ttl = lease_ttl
        # Delivered read events are compacted every `compact_interval` seconds (lineage.compaction).
        self.compactor = compactor
        self.compact_interval = compact_interval
        self._next_compaction = 0.0

    # -- one round -------------------------------------------------------------------------------

    def run_once(self, force: bool = False) -> int:
        """One batch per transport that is not backing off (`force`: ignore back-off). Returns the
        number of events delivered; never raises."""
        delivered = 0
        with self._lock:
            now = self.clock()
            for transport in self.transports:
                state = self.state[transport.name]
                if not force and now < state.next_attempt:
                    continue
                delivered += self._deliver(transport, state)
        return delivered

    def _deliver(self, transport: Transport, state: _State) -> int:
        try:
            if not self.outbox.pending(transport.name, 1):
                return 0  # idle: a read, no lease write, so an idle dispatcher costs the store nothing
            if not self.outbox.acquire(transport.name, self.owner, self.lease_ttl):
                return 0  # another process is delivering to this transport; nothing to do here
            batch = self.outbox.pending(transport.name, self.batch_size)  # again: under the lease
            if not batch:
                return 0
            try:
                transport.send(batch)
            except DeliveryError as exc:
                done = batch[: exc.delivered]
                self.outbox.mark_delivered(transport.name, [e.seq for e in done])
                state.delivered += len(done)
                if exc.rejected and exc.delivered < len(batch):
                    bad = batch[exc.delivered]
                    self.outbox.mark_delivered(transport.name, [bad.seq], outcome="rejected", error=str(exc))
                    state.rejected += 1
                    log.warning("lineage %s rejected event seq=%s for good: %s", transport.name, bad.seq, exc)
                    return len(done)
                self._failed(transport, state, str(exc))
                return len(done)
            self.outbox.mark_delivered(transport.name, [e.seq for e in batch])
        except Exception as exc:  # a transport bug or a busy metadata store must not kill delivery
            self._failed(transport, state, repr(exc))
            return 0
        state.delivered += len(batch)
        if state.failures:
            log.info(
                "lineage transport %s recovered after %d failed attempts", transport.name, state.failures
            )
        state.failures, state.next_attempt, state.last_error = 0, 0.0, None
        return len(batch)

    def _failed(self, transport: Transport, state: _State, error: str) -> None:
        state.failures += 1
        state.last_error = error
        # Full jitter on an exponential delay: many processes retrying a backend that comes back do
        # not all hit it in the same instant.
        delay = min(self.max_delay, self.base_delay * 2 ** (state.failures - 1))
        state.next_attempt = self.clock() + delay * random.uniform(0.5, 1.0)
        level = logging.WARNING if state.failures in (1, 5) or state.failures % 50 == 0 else logging.DEBUG
        log.log(
            level,
            "lineage transport %s failed (%d in a row), retry in %.1fs: %s",
            transport.name,
            state.failures,
            delay,
            error,
        )

    def compact(self, force: bool = False) -> int:
        """A compaction pass when one is due (`force`: now). Returns the events removed; never raises:
        a busy store only delays compaction, and what is not compacted is still all there."""
        if self.compactor is None or (not force and self.clock() < self._next_compaction):
            return 0
        self._next_compaction = self.clock() + self.compact_interval
        try:
            return self.compactor.run([t.name for t in self.transports])
        except Exception:
            log.warning("lineage compaction failed; it runs again later", exc_info=True)
            return 0

    def pending(self) -> dict[str, int]:
        return {t.name: self.outbox.pending_count(t.name) for t in self.transports}

    def drain(self, timeout: float = 10.0) -> bool:
        """Deliver until nothing is pending or `timeout` passed (honours back-off between tries).
        True when every transport is caught up."""
        deadline = time.monotonic() + timeout
        while True:
            self.run_once()
            if not any(self.pending().values()):
                return True
            now = self.clock()
            waits = [max(0.0, s.next_attempt - now) for s in self.state.values()]
            # At least a short nap: another process may hold the lease and be delivering for us.
            pause = max(0.02, min([w for w in waits if w > 0] or [0.0]))
            if time.monotonic() + pause >= deadline:
                return False
            time.sleep(pause)

    # -- background ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the background thread to deliver now (called after an append)."""
        self._wake.set()

    def start(self) -> Dispatcher:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="lineage-dispatcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for transport in self.transports:
            try:
                self.outbox.release(transport.name, self.owner)
            except Exception:  # the lease expires by itself
                log.debug("releasing the lineage lease of %s failed", transport.name, exc_info=True)
            try:
                transport.close()
            except Exception:  # closing is best effort; nothing is lost, events are in the outbox
                log.debug("closing lineage transport %s failed", transport.name, exc_info=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            delivered = self.run_once()
            if delivered >= self.batch_size:
                continue  # a backlog: keep draining without waiting
            self.compact()
            now = self.clock()
            waits = [s.next_attempt - now for s in self.state.values() if s.next_attempt > now]
            timeout = min([self.poll_interval, *waits])
            self._wake.wait(timeout)
            self._wake.clear()
