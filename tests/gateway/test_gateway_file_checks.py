"""`FileChecks`: a snapshot file is hashed once per process (concurrent first reads share it), again
only when the file changes or the catalog marks it broken, and a failure is not re-hashed per read."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from gateway.integrity import FileChecks, file_stat
from meshcore.catalog import Snapshot
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import write_snapshot

SPEC = ProductSpec(
    department="environment",
    product="air_quality",
    classification="public",
    owner="esther@city.example",
    description="Air.",
    columns=(ColumnSpec("reading_id", "integer"),),
)


def _snapshot(tmp_path: Path) -> Snapshot:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT CAST(i AS INTEGER) AS reading_id FROM range(1000) t(i)")
    written = write_snapshot(con, "t", tmp_path)
    return Snapshot(
        id="environment.air_quality@1",
        product=SPEC.name,
        path=written.path,
        checksum=written.checksum,
        row_count=written.row_count,
        byte_size=written.byte_size,
        schema=written.schema,
        spec=SPEC,
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
        quality=None,
        run_id=None,
    )


def test_concurrent_first_reads_share_one_hash_and_later_reads_none(tmp_path: Path) -> None:
    snap, checks = _snapshot(tmp_path), FileChecks()

    async def reads() -> list[tuple[str | None, bool]]:
        first = await asyncio.gather(*(checks.problem(snap) for _ in range(20)))
        return [*first, await checks.problem(snap)]

    results = asyncio.run(reads())
    assert {detail for detail, _ in results} == {None}
    assert checks.hashed.total() == 1
    assert results[-1] == (None, False)


def test_a_changed_file_is_hashed_again_and_its_failure_is_kept_for_a_while(tmp_path: Path) -> None:
    snap, checks = _snapshot(tmp_path), FileChecks(retry_seconds=3600)
    assert asyncio.run(checks.problem(snap)) == (None, True)
    data = snap.path.read_bytes()
    snap.path.write_bytes(data[:100])
    detail, fresh = asyncio.run(checks.problem(snap))
    assert fresh and detail == f"size 100 B, expected {len(data)} B"
    for _ in range(5):  # a broken file is not re-hashed on every request
        assert asyncio.run(checks.problem(snap)) == (detail, False)
    assert checks.hashed.total() == 2
    snap.path.write_bytes(data)  # restored: a new stat, so it is hashed again at once
    assert asyncio.run(checks.problem(snap)) == (None, True)


def test_a_catalog_broken_mark_forces_a_fresh_check(tmp_path: Path) -> None:
    snap, checks = _snapshot(tmp_path), FileChecks(retry_seconds=0)
    assert asyncio.run(checks.problem(snap)) == (None, True)
    # Corrupted in place with nothing visible changed (bit rot on the medium): only a fresh hash can
    # tell. A write from user space always moves the ctime (which the check compares), so the
    # stat the check holds is set to the file's new one, as bit rot would leave it.
    data = bytearray(snap.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    snap.path.write_bytes(bytes(data))
    checks._ok[snap.id] = file_stat(str(snap.path))  # type: ignore[assignment]
    assert asyncio.run(checks.problem(snap)) == (None, False)  # trusted: nothing visible changed
    marked = replace(snap, broken="checksum mismatch (found by another gateway)")
    detail, fresh = asyncio.run(checks.problem(marked))
    assert fresh and detail is not None and detail.startswith("checksum mismatch")


def test_a_mark_found_intact_is_answered_once_not_per_read(tmp_path: Path) -> None:
    """A request's catalog view lags a lifted mark by up to a poll: reads in that window must not
    hash the whole file again each (the CI failure of stop 22). A mark made again is a new one."""
    snap, checks = _snapshot(tmp_path), FileChecks(retry_seconds=0)
    at = datetime(2026, 12, 1, 1, 45, tzinfo=UTC)
    marked = replace(snap, broken="checksum mismatch", broken_at=at)
    assert asyncio.run(checks.problem(marked)) == (None, True)  # restored since: intact
    for _ in range(5):  # the same stale mark, the same file: trusted
        assert asyncio.run(checks.problem(marked)) == (None, False)
    assert asyncio.run(checks.problem(snap)) == (None, False)  # the view caught up
    assert checks.hashed.total() == 1
    again = replace(marked, broken_at=datetime(2026, 12, 1, 1, 46, tzinfo=UTC))
    assert asyncio.run(checks.problem(again)) == (None, True)  # marked again: hashed again
    assert checks.hashed.total() == 2
