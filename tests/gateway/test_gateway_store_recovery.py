"""The metadata store fails under load and comes back: the gateway answers 503 `UNAVAILABLE` while it
is down and 200 again once it is back, without a restart, and every request it answered is logged.

Faults are real: the SQLite files made immutable (`chattr +i`: no write gets through, not even on
descriptors opened before, not even as root), the PostgreSQL server stopped and started. The gateway
is a `civicmesh serve` child process, so a crash (SIGBUS) shows as its death, not the test's.
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.auth import issue_token
from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.settings import Settings
from meshcore.store import dispose, get_engine
from tests import pg
from tests.child_gateway import Gateway
from tests.store_faults import can_make_unwritable, sqlite_files, unwritable

pytestmark = pytest.mark.slow

QUERY = "{{ publicWorks {{ q{n}: serviceRequests(first: 3) {{ nodes {{ requestId }} }} }} }}"


@dataclass
class Answer:
    started: float
    status: int
    code: str | None


@dataclass
class Load:
    """Client threads sending unique requests (no response cache) until stopped."""

    base: str
    token: str
    threads: int = 6
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def _client(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/graphql", json={"query": QUERY.format(n=next(self._counter))})
                except httpx.HTTPError:  # the server is gone: recorded as status 0
                    with self._lock:
                        self.answers.append(Answer(started, 0, None))
                    return
                body = response.json()
                code = body["errors"][0]["extensions"]["code"] if body.get("errors") else None
                if response.status_code == 503:
                    assert body["data"] is None and code == "UNAVAILABLE", body  # no data without a log
                with self._lock:
                    self.answers.append(Answer(started, response.status_code, code))
                time.sleep(0.01)

    @contextmanager
    def running(self) -> Iterator[Load]:
        workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            for worker in workers:
                worker.join(90)

    def since(self, moment: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.started >= moment]

    def wait_for(self, status: int, timeout: float = 90) -> float:
        """Wait until a request started from now on is answered with `status`; its start time."""
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            hits = [a for a in self.since(since) if a.status == status]
            if hits:
                return hits[0].started
            time.sleep(0.05)
        raise AssertionError(f"no {status} within {timeout}s: {self.summary(since)}")

    def summary(self, since: float = 0.0) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.since(since):
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts


def _fault_and_recover(
    settings: Settings, tmp_path: Path, break_store: Callable[[], object], heal_store: Callable[[], None]
) -> tuple[Load, Gateway]:
    """Serve under load; break the store until 503s come; heal it; require 200s from then on."""
    log = AccessLog(get_engine(settings.metadata_url)).ensure_schema()
    before = log.head()
    dispose(settings.metadata_url)  # this process holds no connection to the store during the fault
    gateway = Gateway(settings, tmp_path / "gateway.log")
    load = Load(gateway.base, issue_token(settings, "alice", 1))
    try:
        with load.running():
            load.wait_for(200)
            break_store()
            try:
                load.wait_for(503)
                status, ready = gateway.readiness()
                assert status == 503 and ready["checks"]["store"]["ok"] is False, ready
            finally:
                heal_store()
            healed = time.monotonic()
            first_ok = load.wait_for(200)
            time.sleep(3)  # keep the load on: every later request must succeed
        assert gateway.alive(), gateway.output()
        later = [a.status for a in load.since(first_ok + 0.5)]
        assert later and set(later) == {200}, f"after recovery: {load.summary(first_ok + 0.5)}"
        assert gateway.readiness()[0] == 200
        assert {a.status for a in load.answers} <= {200, 503}, load.summary()
        assert 503 in {a.status for a in load.since(0) if a.started < healed}
    finally:
        gateway.stop()
    answered = sum(1 for a in load.answers if a.status == 200)
    records = [r for r in log.rows(after_seq=before) if r["subject"] == "alice" and r["status"] == 200]
    assert len(records) == answered, "every answered request is logged, once"
    assert verify_report(log).first_bad is None
    return load, gateway


@pytest.fixture
def sqlite_home(tmp_path: Path, gateway_home: Callable[..., Settings]) -> Callable[[str], Settings]:
    """`sqlite_home(journal_mode)`: a home whose store lives alone in `meta/` (the folder made read-only)."""

    def make(journal_mode: str) -> Settings:
        home = tmp_path / "home"
        if not can_make_unwritable(tmp_path):
            pytest.skip("needs root on a file system with `chattr +i` to make an open file unwritable (CI)")
        url = f"sqlite:///{home / 'meta' / 'metadata.db'}?journal_mode={journal_mode}"
        return gateway_home(home, url)

    return make


def test_sqlite_store_unwritable_then_writable_recovers_without_restart(sqlite_home, tmp_path) -> None:
    settings = sqlite_home("wal")
    db = settings.home / "meta" / "metadata.db"
    # The WAL index stays writable: see the SIGBUS test below for what happens when it does not.
    fault = unwritable(sqlite_files(db, with_shm=False))
    _fault_and_recover(settings, tmp_path, fault.__enter__, lambda: fault.__exit__(None, None, None))


def test_rollback_journal_store_survives_every_file_unwritable(sqlite_home, tmp_path) -> None:
    """journal_mode=truncate maps no memory: with every store file immutable, errors, never SIGBUS."""
    settings = sqlite_home("truncate")
    db = settings.home / "meta" / "metadata.db"
    assert not db.with_name("metadata.db-shm").exists()
    fault = unwritable(sqlite_files(db, with_shm=True))
    _fault_and_recover(settings, tmp_path, fault.__enter__, lambda: fault.__exit__(None, None, None))


def test_wal_index_turned_unwritable_is_a_sigbus_and_it_is_reported(sqlite_home, tmp_path) -> None:
    """Why `journal_mode=truncate` exists (meshcore/store.py): in WAL mode SQLite writes its index
    through a shared memory map, and the kernel answers a write to a mapped page of an immutable file
    with SIGBUS. No SQLite setting short of a rollback journal avoids that; the process must at least
    say why it died."""
    settings = sqlite_home("wal")
    db = settings.home / "meta" / "metadata.db"
    dispose(settings.metadata_url)
    gateway = Gateway(settings, tmp_path / "gateway.log")
    load = Load(gateway.base, issue_token(settings, "alice", 1), threads=2)
    try:
        with load.running():
            load.wait_for(200)
            with unwritable(sqlite_files(db, with_shm=True)):
                deadline = time.monotonic() + 60
                while gateway.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
        if gateway.alive():  # SQLite wrote only to index pages already resident: no fault this time
            pytest.skip("the kernel raised no SIGBUS within 60 s (no new page of the WAL index was touched)")
        assert gateway.proc.returncode == -signal.SIGBUS, gateway.output()
        assert "Fatal Python error: Bus error" in gateway.output(chars=1_000_000)
    finally:
        gateway.stop()


def test_postgres_stopped_then_started_recovers_without_restart(
    tmp_path: Path, gateway_home: Callable[..., Settings], postgres: pg.PgCluster
) -> None:
    cluster = pg.start_cluster()  # its own server: stopping it must not disturb other tests
    try:
        settings = gateway_home(tmp_path / "home", cluster.create_database())
        _fault_and_recover(settings, tmp_path, lambda: cluster.stop("fast"), cluster.start)
    finally:
        cluster.destroy()
