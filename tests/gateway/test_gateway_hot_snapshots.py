"""Hot snapshots: local DuckDB copies (gateway/copies.py), built once per host and shared by its
workers, checked before use, counted at their file size, detached least recently used, and
attached while queries run without changing a single answer.

Real DuckDB, real Parquet files; the pool is the gateway's (`gateway.duck.DuckPool`); several
pools on one folder stand for a host's workers (`fcntl` locks work between them as between
processes).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from gateway import copies, duck
from gateway.duck import DuckPool
from gateway.query import PageQuery
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import file_checksum

SPEC = ProductSpec(
    department="d",
    product="p",
    classification="internal",
    owner="o@x.example",
    description="",
    columns=(ColumnSpec("n", "bigint"), ColumnSpec("district", "varchar"), ColumnSpec("status", "varchar")),
)


def _snapshot(folder: Path, name: str, rows: int) -> Path:
    """A Parquet file of `rows` rows of low-cardinality strings (what compresses, like city data)."""
    path = folder / f"{name}.parquet"
    duckdb.sql(
        "COPY (SELECT i AS n, 'D' || (i % 9) AS district, "
        "['open', 'closed', 'in_progress'][1 + i % 3] AS status "
        f"FROM range({rows}) t(i)) TO '{path}' (FORMAT parquet, COMPRESSION zstd)"
    )
    return path


def _hot(pool: DuckPool, path: Path) -> str:
    """Ask for `path` until its copy serves (the first ask starts the background load)."""
    deadline = time.monotonic() + 60
    while (table := pool.source(str(path), path.stat().st_size)) is None:
        assert str(path) not in pool._unfit, "the load failed: the snapshot is read from its file"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return table


def _measured(folder: Path, path: Path) -> int:
    """The size of `path`'s copy (built by a pool of its own if none has yet)."""
    probe = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        _hot(probe, path)
        return probe._hot_bytes
    finally:
        probe.close()


def _copy(folder: Path, path: Path) -> Path:
    return duck.snapshot_copies_dir(folder) / f"{copies.copy_name(str(path))}.duckdb"


def _close_mid_build(pool: DuckPool) -> None:
    """Close `pool` once one of its copy builds runs: close() must return within 5 s."""
    deadline = time.monotonic() + 30
    while not any(load.builder is not None for load in list(pool._loading.values())):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 5


def _rows(pool: DuckPool, path: Path, table: str | None) -> list[tuple]:
    query = {"spec": SPEC, "path": str(path), "columns": ["n", "district", "status"], "limit": 10_000_000}
    return pool.run(*PageQuery(**query, table=table).page_sql()).rows


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "snapshots"
    path.mkdir()
    return path


def test_a_copy_holds_the_files_rows_in_its_order_in_small_row_groups(folder: Path) -> None:
    path = _snapshot(folder, "a", 100_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        table = _hot(pool, path)
        assert _rows(pool, path, table) == _rows(pool, path, None)  # same rows, same order
        assert pool._hot_bytes == _copy(folder, path).stat().st_size  # counted at its size
        groups = pool.run(
            f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{table.replace(chr(34), '')}')"
        ).rows[0][0]
        assert groups == -(-100_000 // copies.COPY_ROW_GROUP_ROWS)
    finally:
        pool.close()


def test_the_budget_detaches_the_least_recently_used_copy(folder: Path) -> None:
    first, second = _snapshot(folder, "first", 400_000), _snapshot(folder, "second", 400_000)
    one = _measured(folder, first)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))  # room for one copy, not two
    try:
        _hot(pool, first)
        _hot(pool, second)
        assert pool.source(str(second), second.stat().st_size) is not None
        assert str(first) not in pool._hot  # detached: it was used least recently
        assert pool._hot_bytes <= pool.hot_budget_bytes
        attached = {row[0] for row in pool.run("SELECT database_name FROM duckdb_databases()").rows}
        assert sum(name.startswith("hot_") for name in attached) == 1
        assert _copy(folder, first).exists()  # the host's other workers may still read it
    finally:
        pool.close()


def test_a_copy_detached_by_the_budget_is_attached_again_without_a_second_hash(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LRU detaches and re-attaches copies as reads move between snapshots: each re-attach
    hashed the whole copy again (a 10M-row copy: ~400 MiB read per swap). A process now trusts a
    copy it checked or built while its stat holds; a copy changed in between (here: rewritten with
    bytes flipped in place, its mtime put back) is hashed, refused and rebuilt."""
    hashed: list[str] = []
    mac = copies.SnapshotCopies._mac
    monkeypatch.setattr(copies.SnapshotCopies, "_mac", lambda self, c, s: hashed.append(s) or mac(self, c, s))
    first, second = _snapshot(folder, "first", 400_000), _snapshot(folder, "second", 400_000)
    one = _measured(folder, first)
    _measured(folder, second)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))  # room for one copy, not two
    try:
        hashed.clear()
        for _ in range(3):  # first, second, first, second, ...: each swap detaches the other
            for path in (first, second):
                table = _hot(pool, path)
        assert hashed.count(str(first)) == 1 and hashed.count(str(second)) == 1, hashed
        assert _rows(pool, second, table) == _rows(pool, second, None)
        copy = _copy(folder, first)
        before = copy.stat()
        with copy.open("r+b") as handle:
            for offset in range(before.st_size // 4, before.st_size // 3, 4096):
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ 0xFF]))
        os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (copy.stat().st_size, copy.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        table = _hot(pool, first)
        assert hashed.count(str(first)) >= 2  # checked again: its ctime moved
        assert _rows(pool, first, table) == _rows(pool, first, None)  # refused, rebuilt from the file
    finally:
        pool.close()


def test_a_copy_written_to_after_its_build_hashed_it_is_checked_before_it_is_attached_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attack on the trusted stat: a build hashes its copy, then writes the sidecar and renames the
    copy into place; a write into the copy in that window (bytes flipped in place) is in the stat
    the build trusts. Neither then nor once the budget detached it may the copy be attached
    unchecked: what is attached is always bytes that match the sidecar's HMAC."""
    first, second = _snapshot(folder, "first", 400_000), _snapshot(folder, "second", 400_000)
    one = _measured(folder, first)
    _measured(folder, second)
    copy = _copy(folder, first)
    copy.unlink()  # this pool builds it again, with the write below in its window
    mac = copies.SnapshotCopies._mac
    tampered: list[Path] = []

    def hashed_then_written(self: copies.SnapshotCopies, target: Path, snapshot: str) -> str:
        digest = mac(self, target, snapshot)
        if target.name.endswith(".partial") and not tampered:
            with target.open("r+b") as handle:
                for offset in range(target.stat().st_size // 4, target.stat().st_size // 3, 4096):
                    handle.seek(offset)
                    byte = handle.read(1)
                    handle.seek(offset)
                    handle.write(bytes([byte[0] ^ 0xFF]))
            tampered.append(target)
        return digest

    monkeypatch.setattr(copies.SnapshotCopies, "_mac", hashed_then_written)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))  # room for one copy, not two
    try:
        assert pool.source(str(first), first.stat().st_size) is None  # the build starts
        deadline = time.monotonic() + 60
        while str(first) in pool._loading:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert tampered
        if str(first) in pool._hot:  # attached: it must be the checked bytes
            assert pool.copies._intact(copy, str(first)), "a copy changed after its hash was attached"
            _hot(pool, second)  # the budget detaches first
        clock = pool._unfit.clock
        pool._unfit.clock = lambda: clock() + copies.COPY_RETRY_SECONDS  # if it failed: a minute later
        while (table := pool.source(str(first), first.stat().st_size)) is None:  # attached again
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert pool.copies._intact(copy, str(first)), "an unchecked copy was attached"
        assert _rows(pool, first, table) == _rows(pool, first, None)
    finally:
        pool.close()


def test_a_copy_and_its_folder_are_the_services_alone_whatever_the_umask(folder: Path) -> None:
    """A copy holds the snapshot's rows (personal data among them): readable by no other local
    user, even under a permissive umask."""
    path = _snapshot(folder, "private", 10_000)
    previous = os.umask(0o002)
    try:
        _measured(folder, path)
    finally:
        os.umask(previous)
    assert _copy(folder, path).stat().st_mode & 0o777 == 0o600
    assert _copy(folder, path).parent.stat().st_mode & 0o777 == 0o700


def test_workers_of_a_host_build_one_copy_and_share_it(folder: Path) -> None:
    """Two pools (a host's workers) ask for the same snapshot at once: one builds, the other
    waits for it and attaches the same file."""
    path = _snapshot(folder, "shared", 300_000)
    pools = [DuckPool(folder, "key", hot_budget_bytes=1 << 30) for _ in range(2)]
    try:
        for pool in pools:
            assert pool.source(str(path), path.stat().st_size) is None  # both start at once
        tables = [_hot(pool, path) for pool in pools]
        built = _copy(folder, path).stat()
        assert all(
            _rows(pool, path, table) == _rows(pool, path, None)
            for pool, table in zip(pools, tables, strict=True)
        )
        assert sorted(p.name for p in _copy(folder, path).parent.iterdir()) == sorted(
            f"{_copy(folder, path).stem}{suffix}" for suffix in (".duckdb", ".json", ".lock")
        )  # no second copy, no partial file left
        third = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
        _hot(third, path)
        third.close()
        assert _copy(folder, path).stat().st_ino == built.st_ino  # a later worker reuses it
    finally:
        for pool in pools:
            pool.close()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "forge the sidecar", "drop the sidecar"])
def test_a_damaged_copy_is_never_read_but_rebuilt(folder: Path, damage: str) -> None:
    """Fail closed: a copy whose bytes do not match its sidecar's HMAC (under a key only the server
    knows) is rebuilt from the snapshot file before any query reads it."""
    path = _snapshot(folder, "target", 200_000)
    _measured(folder, path)
    copy, sidecar = _copy(folder, path), _copy(folder, path).with_suffix(".json")
    if damage == "flip a byte":
        with copy.open("r+b") as handle:
            handle.seek(copy.stat().st_size // 2)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        with copy.open("r+b") as handle:
            handle.truncate(copy.stat().st_size // 2)
    elif damage == "forge the sidecar":  # a MAC under another key (what a forger can compute)
        forged = copies.SnapshotCopies(copy.parent, b"guessed key")._mac(copy, str(path))
        sidecar.write_text(sidecar.read_text().replace(json.loads(sidecar.read_text())["mac"], forged))
    else:
        sidecar.unlink()
    damaged = copy.stat().st_mtime_ns
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        table = _hot(pool, path)
        assert copy.stat().st_mtime_ns != damaged  # rebuilt
        assert _rows(pool, path, table) == _rows(pool, path, None)
    finally:
        pool.close()


def test_the_copy_of_a_removed_snapshot_is_swept_by_the_next_build(folder: Path) -> None:
    old, new = _snapshot(folder, "old", 50_000), _snapshot(folder, "new", 50_000)
    _measured(folder, old)
    old.unlink()  # retention removed the snapshot
    _measured(folder, new)
    assert not _copy(folder, old).exists() and not _copy(folder, old).with_suffix(".json").exists()
    assert _copy(folder, new).exists()


def test_copies_live_outside_the_snapshots_folder_and_queries_read_nothing_else(folder: Path) -> None:
    """The copies folder is readable by the pool's locked-down connection (as the snapshots are)
    and nothing beside them; backups (which copy the snapshots folder) leave copies out."""
    path = _snapshot(folder, "x", 10_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        _hot(pool, path)
        assert not _copy(folder, path).is_relative_to(folder)
        outside = folder.parent / "outside.duckdb"
        duckdb.connect(str(outside)).close()
        with pytest.raises(duckdb.PermissionException):
            pool.run(f"ATTACH '{outside}' AS stolen (READ_ONLY)")
    finally:
        pool.close()


def test_a_copy_loaded_while_queries_run_answers_exactly_like_the_file(folder: Path) -> None:
    """A build and an attach under a steady stream of queries: every answer, from the file or the
    copy, is the same rows in the same order."""
    path = _snapshot(folder, "busy", 300_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    query = {
        "spec": SPEC,
        "path": str(path),
        "columns": ["n", "district", "status"],
        "where": {"district": {"eq": "D4"}, "status": {"eq": "closed"}},
        "order_by": [("n", "DESC")],
        "limit": 50,
    }
    expected = pool.run(*PageQuery(**query).page_sql()).rows
    answers: list[list[tuple]] = []
    stop = threading.Event()

    def reads() -> None:
        while not stop.is_set():
            answers.append(pool.run(*PageQuery(**query).page_sql()).rows)

    reader = threading.Thread(target=reads)
    reader.start()
    try:
        table = _hot(pool, path)
        for _ in range(20):
            answers.append(pool.run(*PageQuery(**query, table=table).page_sql()).rows)
    finally:
        stop.set()
        reader.join()
        pool.close()
    assert len(expected) == 51 and all(answer == expected for answer in answers)


def test_a_query_holding_an_evicted_copy_answers_like_the_file_even_while_it_reloads(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request takes a copy's name (`source`) before its query runs (it may wait for a worker):
    the copy detached meanwhile, and attached again under a new name, must not fail the query."""
    monkeypatch.setattr(duck, "HOT_EXPANSION", 0.01)  # the budget below holds one measured copy
    first, second = _snapshot(folder, "first", 450_000), _snapshot(folder, "second", 450_000)
    one = _measured(folder, first)
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))
    query = {"spec": SPEC, "path": str(first), "columns": ["n", "status"], "order_by": [("n", "DESC")]}
    try:
        expected = [
            pool.run(*PageQuery(**query).count_sql()).rows,
            pool.run(*PageQuery(**query).page_sql()).rows,
        ]
        held = PageQuery(**query, table=_hot(pool, first))
        _hot(pool, second)
        assert str(first) not in pool._hot
        answers = [[pool.run(*held.count_sql()).rows, pool.run(*held.page_sql()).rows]]
        while pool.source(str(first), first.stat().st_size) is None:  # attaching again
            assert str(first) not in pool._unfit
            answers.append([pool.run(*held.count_sql()).rows, pool.run(*held.page_sql()).rows])
    finally:
        pool.close()
    assert expected[0] == [(450_000,)] and all(answer == expected for answer in answers)


def test_closing_the_pool_interrupts_a_build_and_attaches_nothing(folder: Path) -> None:
    """close() interrupts the copy's builder: the shutdown is not held for a whole snapshot, nothing
    is attached, and no file appears under the copy's final name."""
    path = _snapshot(folder, "long", 6_000_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    assert pool.source(str(path), path.stat().st_size) is None  # starts the build
    _close_mid_build(pool)
    assert str(path) not in pool._hot and not pool._loading
    assert not _copy(folder, path).exists()
    assert not list(_copy(folder, path).parent.glob("*.partial*"))  # nor the unfinished file


def test_a_copy_that_fits_the_budget_alone_is_attached_when_the_budget_is_full_of_others(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attached beside a budget full of other copies, a copy that fits the budget alone is not
    refused: room is made (least recently used first) first."""
    first, second = _snapshot(folder, "first", 1_000_000), _snapshot(folder, "second", 1_000_000)
    one = _measured(folder, first)
    monkeypatch.setattr(duck, "HOT_EXPANSION", one / second.stat().st_size)  # a true estimate
    pool = DuckPool(folder, "key", hot_budget_bytes=int(one * 1.5))
    try:
        _hot(pool, first)
        _hot(pool, second)
        assert list(pool._hot) == [str(second)] and pool._hot_bytes <= pool.hot_budget_bytes
    finally:
        pool.close()


def _other(folder: Path, name: str, rows: int) -> Path:
    """A snapshot of `_snapshot`'s schema with other values (another product's, or another version)."""
    path = folder / f"{name}.parquet"
    duckdb.sql(
        f"COPY (SELECT -i AS n, 'X' AS district, 'secret' AS status FROM range({rows}) t(i)) "
        f"TO '{path}' (FORMAT parquet)"
    )
    return path


def test_another_snapshots_valid_copy_under_this_snapshots_name_is_never_read(folder: Path) -> None:
    """Attack: copy B's intact copy over A's, and B's sidecar with its `snapshot` field rewritten to
    A's path (no key needed to edit it). The check must bind the copy to its snapshot: A's queries
    read A's rows (the copy is rebuilt), never B's."""
    a, b = _snapshot(folder, "a", 20_000), _other(folder, "b", 20_000)
    _measured(folder, a)
    _measured(folder, b)
    sidecar = json.loads(_copy(folder, b).with_suffix(".json").read_text())
    _copy(folder, a).write_bytes(_copy(folder, b).read_bytes())
    _copy(folder, a).with_suffix(".json").write_text(json.dumps({**sidecar, "snapshot": str(a)}))
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        table = _hot(pool, a)
        assert _rows(pool, a, table) == _rows(pool, a, None)
    finally:
        pool.close()


def test_a_build_that_fills_the_disk_leaves_nothing_behind_and_the_file_keeps_answering(folder: Path) -> None:
    """Fault: the disk fills up mid-build (here: the process may not grow a file past 1 MiB,
    RLIMIT_FSIZE, so writes fail with EFBIG as they would with ENOSPC). The copy is given up,
    its unfinished file removed (a full disk must not stay full of it), queries read the file,
    and /readyz's report says so."""
    path = _snapshot(folder, "big", 1_000_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))
    try:
        assert pool.source(str(path), path.stat().st_size) is None  # starts the build
        deadline = time.monotonic() + 60
        while str(path) not in pool._unfit:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    try:
        assert not list(_copy(folder, path).parent.glob("*.partial*"))
        assert not _copy(folder, path).exists()
        assert len(_rows(pool, path, pool.source(str(path), path.stat().st_size))) == 1_000_000
        assert "1 read from their files (no copy)" in pool.memory_report()
    finally:
        pool.close()


def test_what_a_crashed_build_left_is_swept_once_its_snapshot_is_gone(folder: Path) -> None:
    """Fault: a worker is killed (SIGKILL) mid-build, then retention removes the snapshot: no later
    build ever writes that copy again, so the next build on the host removes the dead build's files."""
    path = _snapshot(folder, "killed", 6_000_000)
    script = (
        "import sys, time; from pathlib import Path; from gateway.duck import DuckPool\n"
        "pool = DuckPool(Path(sys.argv[1]), 'key', hot_budget_bytes=1 << 30)\n"
        "pool.source(sys.argv[2], Path(sys.argv[2]).stat().st_size)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script, str(folder), str(path)])
    partial = _copy(folder, path).with_name(_copy(folder, path).name + ".partial")
    try:
        deadline = time.monotonic() + 60
        while not partial.exists():
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.01)
    finally:
        worker.kill()
        worker.wait()
    assert partial.exists()  # the crash left it
    path.unlink()  # retention removed the snapshot
    _measured(folder, _snapshot(folder, "next", 1_000))
    assert not list(partial.parent.glob(f"{_copy(folder, path).stem}.*partial*"))


def test_a_build_never_writes_through_a_link_planted_in_the_copies_folder(folder: Path) -> None:
    """Attack: the sidecar's name is a symbolic link to a file outside (a careless operator's, or
    a planted one). The build replaces the link; the file it pointed to is untouched."""
    path = _snapshot(folder, "linked", 10_000)
    victim = folder.parent / "victim.txt"
    victim.write_text("keep me")
    copies_dir = _copy(folder, path).parent
    copies_dir.mkdir(parents=True)
    _copy(folder, path).with_suffix(".json").symlink_to(victim)
    _measured(folder, path)
    assert victim.read_text() == "keep me"
    assert not _copy(folder, path).with_suffix(".json").is_symlink()


def test_a_copies_folder_that_cannot_be_made_leaves_the_gateway_answering_from_files(folder: Path) -> None:
    """Fault: the copies folder cannot be created (here `<home>/cache` is a file; likewise a
    read-only home). Copies are only a speed-up: the pool starts, reads the snapshot from its
    file, and its report (/readyz) says the snapshot has no copy."""
    (folder.parent / "cache").write_text("not a folder")
    path = _snapshot(folder, "plain", 10_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        assert pool.source(str(path), path.stat().st_size) is None
        deadline = time.monotonic() + 30
        while str(path) not in pool._unfit:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert len(_rows(pool, path, pool.source(str(path), path.stat().st_size))) == 10_000
        assert "1 read from their files (no copy)" in pool.memory_report()
    finally:
        pool.close()


def test_a_failed_copy_is_tried_again_after_a_wait_that_doubles_up_to_an_hour() -> None:
    """`copies.Backoff` as a table: (failures in a row) -> the wait before the next try; a copy
    attached again and failing before it served as long as its last wait continues the run."""
    now = [1000.0]
    backoff = copies.Backoff(60, 3600, clock=lambda: now[0])
    assert "p" not in backoff and not backoff.waiting("p")
    waits = [backoff.failed("p") for _ in range(8)]
    assert waits == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert "p" in backoff and backoff.waiting("p") and len(backoff) == 1
    now[0] += 3599
    assert backoff.waiting("p")
    now[0] += 1
    assert not backoff.waiting("p") and "p" in backoff  # may be tried; still read from its file
    backoff.succeeded("p")  # attached: on trial for its last wait (an hour)
    assert "p" not in backoff and not backoff.waiting("p")
    now[0] += 3599
    assert backoff.failed("p") == 3600  # failed again on trial: the run goes on
    now[0] += 3600
    backoff.succeeded("p")
    now[0] += 3600
    assert backoff.failed("p") == 60  # served as long as its last wait: a new run starts over


def test_a_copy_that_failed_for_a_passing_reason_is_built_once_its_wait_is_over(folder: Path) -> None:
    """Fault that clears: the copies folder cannot be made (`<home>/cache` is a file), then the
    operator removes the file. The snapshot is read from its file meanwhile, with no new build per
    read; once the wait is over the next read builds the copy and later reads are served from it.
    (Before, a process read that snapshot from its file until it restarted.)"""
    cache = folder.parent / "cache"
    cache.write_text("not a folder")
    path = _snapshot(folder, "later", 10_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        assert pool.source(str(path), path.stat().st_size) is None
        deadline = time.monotonic() + 30
        while str(path) not in pool._unfit or str(path) in pool._loading:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for _ in range(5):  # waiting: read from the file, and no build started per read
            assert pool.source(str(path), path.stat().st_size) is None and str(path) not in pool._loading
        cache.unlink()  # the operator's fix
        clock = pool._unfit.clock
        pool._unfit.clock = lambda: clock() + copies.COPY_RETRY_SECONDS  # a minute later
        while (table := pool.source(str(path), path.stat().st_size)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _rows(pool, path, table) == _rows(pool, path, None)
        assert str(path) not in pool._unfit and "0 read from their files (no copy)" in pool.memory_report()
    finally:
        pool.close()


def test_closing_the_pool_stops_the_builds_still_queued_behind_the_running_one(folder: Path) -> None:
    """At start-up every product's first read queues a build (one runs at a time per process).
    close() must stop them all, not run each queued build to its end before it returns."""
    paths = [_snapshot(folder, f"queued{i}", 4_000_000) for i in range(3)]
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    for path in paths:
        assert pool.source(str(path), path.stat().st_size) is None
    _close_mid_build(pool)
    assert not pool._hot and not pool._loading
    assert not [path for path in paths if _copy(folder, path).exists()]


@pytest.mark.parametrize("damage", ["flip bytes", "truncate"])
def test_a_copy_damaged_while_attached_gives_way_to_the_file(folder: Path, damage: str) -> None:
    """Fault: an attached copy is damaged in place (bit rot, an operator's `cp` over it, a
    truncation). DuckDB's block checksums catch it on read; the query is answered from the
    snapshot's file (intact: checked against its checksum), and the copy is not used again by
    this process, rather than every read of the snapshot failing (500 or 503) until a restart."""
    path = _snapshot(folder, "rotten", 1_000_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        table = _hot(pool, path)  # attached, no block of it read yet
        copy = _copy(folder, path)
        size = copy.stat().st_size
        with copy.open("r+b") as handle:
            if damage == "truncate":
                handle.truncate(size // 3)
            for offset in range(size // 4, size // 3, 4096) if damage == "flip bytes" else ():
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ 0xFF]))
        assert _rows(pool, path, table) == _rows(pool, path, None)
        assert pool.source(str(path), path.stat().st_size) is None  # given up in this process
        assert "1 read from their files (no copy)" in pool.memory_report()
    finally:
        pool.close()


def _flip_in_place(copy: Path) -> None:
    size = copy.stat().st_size
    with copy.open("r+b") as handle:
        for offset in range(size // 4, size // 3, 4096):
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))


def test_a_copy_that_fails_its_queries_again_after_each_retry_waits_twice_as_long_each_time(
    folder: Path,
) -> None:
    """Lasting fault: every copy of a snapshot is damaged soon after it is attached (a failing disk
    region). Each failure in a row must double the wait (copies.Backoff), as for a build that
    fails: attaching a copy that then fails its first query is not a success. Else the process
    rebuilds (or hashes) the copy every minute for as long as the fault lasts."""
    path = _snapshot(folder, "failing", 200_000)
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    now = [pool._unfit.clock()]
    pool._unfit.clock = lambda: now[0]  # stands still but when moved below
    try:
        table = _hot(pool, path)
        for waited in (60.0, 120.0):  # the wait after the first and the second failure
            _flip_in_place(_copy(folder, path))
            assert _rows(pool, path, table) == _rows(pool, path, None)  # given up: read from the file
            now[0] += waited - 1
            assert pool.source(str(path), path.stat().st_size) is None and pool._unfit.waiting(str(path))
            now[0] += 1
            deadline = time.monotonic() + 60
            while (table := pool.source(str(path), path.stat().st_size)) is None:  # tried again
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        pool.close()


def _assert_a_later_copy_answers_like_the_file(folder: Path, path: Path) -> None:
    """A later worker's copy of `path` (the one on disk, or rebuilt) holds the file's rows."""
    later = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        assert _rows(later, path, _hot(later, path)) == _rows(later, path, None)
    finally:
        later.close()


def test_a_file_swapped_while_its_build_waits_is_never_copied(folder: Path) -> None:
    """Attack: a request checks the snapshot's file and starts its build, which waits (here for
    another worker's lock on the copy; likewise behind other builds); the file is swapped in place
    meanwhile and put back later. The build sees the file is no longer the one the request
    checked (its stat, ctime included) and copies nothing: the swapped rows are never laundered
    into a copy every worker trusts once the file verifies again."""
    path = _snapshot(folder, "swapped", 20_000)
    original = path.read_bytes()
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    copy = _copy(folder, path)
    copy.parent.mkdir(parents=True)
    try:
        with open(copy.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker checks or builds this copy
            assert pool.source(str(path), path.stat().st_size) is None  # the request's build, waiting
            _other(folder, "swapped", 20_000)  # swapped in place after the check
            fcntl.flock(lock, fcntl.LOCK_UN)
        deadline = time.monotonic() + 60
        while str(path) in pool._loading:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert str(path) in pool._unfit and not copy.exists()
    finally:
        pool.close()
    path.write_bytes(original)  # put back: its checksum verifies again
    _assert_a_later_copy_answers_like_the_file(folder, path)


def test_a_copy_built_from_a_file_swapped_after_its_check_is_never_made(folder: Path) -> None:
    """Attack: a request checks the snapshot's file (gateway.integrity.ensure_intact: the pool's
    `checks`); the file is swapped before the request asks for its copy (`source`), and put back
    after. A copy of the swapped rows, HMAC'd by the server, would be served by every worker and
    every later process once the file verifies again: the build copies only the file as the check
    hashed it, so nothing is copied, and a later copy holds the file's rows."""
    path = _snapshot(folder, "laundered", 20_000)
    original = path.read_bytes()
    snap = SimpleNamespace(
        id="s1", path=path, checksum=file_checksum(path), byte_size=len(original), broken=None
    )
    pool = DuckPool(folder, "key", hot_budget_bytes=1 << 30)
    try:
        assert asyncio.run(pool.checks.problem(snap))[0] is None  # type: ignore[arg-type]  # the check
        _other(folder, "laundered", 20_000)  # swapped in place after the check, before `source`
        assert pool.source(os.path.realpath(path), path.stat().st_size) is None  # starts the build
        deadline = time.monotonic() + 60
        while pool._loading:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not pool._hot and not _copy(folder, path).exists()
    finally:
        pool.close()
    path.write_bytes(original)  # put back: its checksum verifies again
    _assert_a_later_copy_answers_like_the_file(folder, path)


def test_a_copy_built_on_many_threads_from_many_row_groups_keeps_the_files_order(folder: Path) -> None:
    """Pages read without ORDER BY (`PageQuery.presorted`) rely on the copy holding the file's rows
    in the file's order: built by 4 threads from 400 row groups, read by 4, every row sits where
    it sits in the file, and a filtered page past many row groups is the file's page."""
    path = folder / "wide.parquet"
    duckdb.sql(
        "COPY (SELECT i AS n, 'D' || (hash(i) % 9) AS district, 'open' AS status FROM range(2000000) t(i)) "
        f"TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 5000)"
    )
    pool = DuckPool(folder, "key", threads=4, hot_budget_bytes=1 << 30)
    try:
        table = _hot(pool, path)
        misplaced = (
            f"SELECT count(*) FROM (SELECT file_row_number, row_number() OVER () - 1 AS i FROM {table})"
        )
        assert pool.run(misplaced + " WHERE file_row_number <> i").rows == [(0,)]
        page = "SELECT file_row_number, n FROM {} WHERE district = 'D3' LIMIT 1000 OFFSET 150000"
        from_copy = pool.run(page.format(table)).rows
        assert len(from_copy) == 1000
        assert from_copy == pool.run(page.format(duck.parquet_source(str(path)))).rows
    finally:
        pool.close()
