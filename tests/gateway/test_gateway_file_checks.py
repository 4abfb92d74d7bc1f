"""`FileChecks`: a snapshot file is hashed once per process (concurrent first reads share it), again
only when the file changes or the catalog marks it broken, and a failure is not re-hashed per read."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from civicmesh.cli import snapshots as snapshots_cli
from gateway.errors import UNAVAILABLE, GovernedError
from gateway.integrity import FileChecks, ensure_intact, file_stat
from meshcore.catalog import Catalog, Snapshot
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import integrity_problem, write_snapshot
from meshcore.store import get_engine

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


def test_a_mark_found_intact_is_answered_once_not_per_read(tmp_path: Path, metadata_url: str) -> None:
    """A request's catalog view lags a lifted mark by up to a poll: reads in that window must not
    hash the whole file again each (the CI failure of stop 22). A mark made again is a new one."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)
    asyncio.run(ensure_intact(checks, catalog, marked))  # restored since: intact, and the mark lifted
    assert _view(catalog, snap.id).broken is None
    for _ in range(5):  # the same stale mark, the same file: trusted
        assert asyncio.run(checks.problem(marked)) == (None, False)
    assert asyncio.run(checks.problem(_view(catalog, snap.id))) == (None, False)  # the view caught up
    assert checks.hashed.total() == 1
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    again = _view(catalog, snap.id)
    assert again.broken_at != marked.broken_at
    assert asyncio.run(checks.problem(again)) == (None, True)  # marked again: hashed again
    assert checks.hashed.total() == 2


# -- the catalog's broken mark and ensure_intact, against a real catalog ------------------------------

PROBLEM = "unreadable (Input/output error)"  # what a failing medium makes `integrity_problem` say


def _catalogued(tmp_path: Path, metadata_url: str) -> tuple[Catalog, Snapshot]:
    """A published snapshot in a catalog of its own (SQLite and PostgreSQL: `metadata_url`)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT CAST(i AS INTEGER) AS reading_id FROM range(1000) t(i)")
    written = write_snapshot(con, "t", tmp_path / "snapshots")
    catalog = Catalog(get_engine(metadata_url), tmp_path).ensure_schema()
    return catalog, catalog.publish(SPEC, written)


def _view(catalog: Catalog, snapshot_id: str) -> Snapshot:
    """The snapshot as a request reads it from the catalog."""
    snap = catalog.snapshot(snapshot_id)
    assert snap is not None
    return snap


def _rot_in_place(checks: FileChecks, snap: Snapshot) -> None:
    """Corrupt `snap`'s file with nothing visible changed (see the broken-mark test above)."""
    data = bytearray(snap.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    snap.path.write_bytes(bytes(data))
    checks._ok[snap.id] = file_stat(str(snap.path))  # type: ignore[assignment]


async def _cancel_once_hashing(checks: FileChecks, snap: Snapshot, catalog: Catalog) -> None:
    """A read of `snap` whose request is cancelled (client gone, a deadline) while its file is hashed;
    returns once that hash is over."""
    read = asyncio.ensure_future(ensure_intact(checks, catalog, snap))
    while not checks._pending:
        await asyncio.sleep(0)
    read.cancel()
    while checks._pending:
        await asyncio.sleep(0.001)
    with contextlib.suppress(asyncio.CancelledError):
        await read


def test_a_mark_whose_lifting_read_was_cancelled_is_lifted_by_the_next_read(
    tmp_path: Path, metadata_url: str
) -> None:
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")  # a passing medium error
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)
    asyncio.run(_cancel_once_hashing(checks, marked, catalog))
    assert _view(catalog, snap.id).broken == PROBLEM  # the cancelled read did not lift it
    asyncio.run(ensure_intact(checks, catalog, marked))  # the file is intact: this read lifts it
    assert _view(catalog, snap.id).broken is None


def test_an_intact_file_is_served_when_its_mark_cannot_be_lifted_and_the_lift_is_retried(
    tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault: the store refuses the write that lifts a mark (locked, read-only, down) just after a
    fresh hash found the file intact. The read is served (the hash vouches for the file), not
    failed as an internal error; the failure is logged; the mark is not taken as answered, so the
    next read hashes again and lifts it once the store accepts writes."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)
    lift = catalog.clear_broken

    def refused(*args: object, **kwargs: object) -> bool:
        raise OSError("database is locked")

    monkeypatch.setattr(catalog, "clear_broken", refused)
    with caplog.at_level(logging.ERROR, logger="gateway.integrity"):
        asyncio.run(ensure_intact(checks, catalog, marked))  # served: no exception
    assert "could not be lifted" in caplog.text and _view(catalog, snap.id).broken == PROBLEM
    monkeypatch.setattr(catalog, "clear_broken", lift)
    asyncio.run(ensure_intact(checks, catalog, marked))
    assert _view(catalog, snap.id).broken is None and checks.hashed.total() == 2


def test_a_mark_left_standing_and_found_again_by_verify_is_refused(tmp_path: Path, metadata_url: str) -> None:
    """The file verified here while the mark stood, then failed again the same way: `snapshots
    verify` finds the mark it would make already there, so the mark keeps its time. Never served."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)
    asyncio.run(_cancel_once_hashing(checks, marked, catalog))
    _rot_in_place(checks, snap)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")  # found again
    with pytest.raises(GovernedError) as refused:
        asyncio.run(ensure_intact(checks, catalog, _view(catalog, snap.id)))
    assert refused.value.code == UNAVAILABLE


def test_a_file_rotten_after_its_mark_was_answered_and_marked_again_by_verify_is_refused(
    tmp_path: Path, metadata_url: str
) -> None:
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)
    asyncio.run(ensure_intact(checks, catalog, marked))  # intact: lifted and answered
    _rot_in_place(checks, snap)
    assert asyncio.run(checks.problem(marked)) == (None, False)  # the stale view: nothing can tell yet
    detail = integrity_problem(snap.path, snap.checksum, snap.byte_size)  # what verify finds
    assert detail is not None
    catalog.mark_broken(snap.id, detail, "civicmesh snapshots verify")
    with pytest.raises(GovernedError) as refused:
        asyncio.run(ensure_intact(checks, catalog, _view(catalog, snap.id)))
    assert refused.value.code == UNAVAILABLE
    assert _view(catalog, snap.id).broken == detail  # still marked


def test_concurrent_reads_of_a_marked_intact_file_lift_the_mark_once_and_log_it_once(
    tmp_path: Path, metadata_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    catalog, snap = _catalogued(tmp_path, metadata_url)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    checks, marked = FileChecks(retry_seconds=0), _view(catalog, snap.id)

    async def reads() -> None:
        await asyncio.gather(*(ensure_intact(checks, catalog, marked) for _ in range(5)))

    with caplog.at_level(logging.WARNING, logger="gateway.integrity"):
        asyncio.run(reads())
        asyncio.run(reads())  # the stale view of the lifted mark: neither hashed nor lifted again
    assert _view(catalog, snap.id).broken is None
    assert checks.hashed.total() == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"snapshot {snap.id} of {snap.product} verifies again; broken mark lifted"
    ]


def test_a_read_seeing_a_newer_mark_does_not_share_a_hash_begun_before_it(
    tmp_path: Path, metadata_url: str
) -> None:
    """A hash begun under one mark (or none) may have read the file before whatever the newer mark
    found: a read that sees the newer mark waits for a hash of its own."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    checks = FileChecks(retry_seconds=0)
    catalog.mark_broken(snap.id, PROBLEM, "gateway a")
    first = _view(catalog, snap.id)
    catalog.clear_broken(snap.id)
    catalog.mark_broken(snap.id, PROBLEM, "civicmesh snapshots verify")
    again = _view(catalog, snap.id)
    assert again.broken_at != first.broken_at

    async def reads() -> list[tuple[str | None, bool]]:
        return list(await asyncio.gather(checks.problem(first), checks.problem(again)))

    assert asyncio.run(reads()) == [(None, True), (None, True)]
    assert checks.hashed.total() == 2


def test_a_read_lifts_only_the_mark_its_hash_answered(tmp_path: Path, metadata_url: str) -> None:
    """The request's view lags the catalog: the mark it shows was replaced by a newer finding since.
    Its hash answers the mark it saw; the newer one stays until a read that sees it hashes again."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    checks = FileChecks(retry_seconds=0)
    catalog.mark_broken(snap.id, PROBLEM, "gateway a")
    stale = _view(catalog, snap.id)
    catalog.mark_broken(snap.id, "checksum mismatch (sha256 0123456789ab..., expected ...)", "verify")
    asyncio.run(ensure_intact(checks, catalog, stale))
    assert _view(catalog, snap.id).broken is not None
    asyncio.run(ensure_intact(checks, catalog, _view(catalog, snap.id)))
    assert _view(catalog, snap.id).broken is None
    assert checks.hashed.total() == 2


def test_a_mark_without_a_time_is_never_taken_as_answered(tmp_path: Path) -> None:
    """A mark whose time is unknown cannot be told from the same mark made again: always hashed."""
    snap, checks = _snapshot(tmp_path), FileChecks(retry_seconds=0)
    marked = replace(snap, broken=PROBLEM, broken_at=None)
    assert asyncio.run(checks.problem(marked)) == (None, True)
    _rot_in_place(checks, snap)
    detail, fresh = asyncio.run(checks.problem(marked))
    assert fresh and detail is not None and detail.startswith("checksum mismatch")


def test_verify_lifts_only_the_mark_it_saw_not_one_a_gateway_made_while_it_hashed(
    tmp_path: Path, metadata_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`civicmesh snapshots verify` lists the snapshots, then hashes each file. A gateway that
    finds the file broken meanwhile marks it: verify's own (earlier) finding that the file was
    intact must not lift that newer mark."""
    catalog, snap = _catalogued(tmp_path, metadata_url)
    found = "checksum mismatch (found by a gateway while verify hashed)"

    def hash_while_a_gateway_marks(*args: object) -> str | None:
        catalog.mark_broken(snap.id, found, "gateway b")
        return integrity_problem(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshots_cli, "integrity_problem", hash_while_a_gateway_marks)
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path))
    monkeypatch.setattr(snapshots_cli, "_catalog", lambda _: catalog)
    assert snapshots_cli.run_verify(argparse.Namespace(product=SPEC.name)) == 0
    assert "broken mark lifted" not in capsys.readouterr().out
    assert _view(catalog, snap.id).broken == found
    monkeypatch.setattr(snapshots_cli, "integrity_problem", integrity_problem)
    assert snapshots_cli.run_verify(argparse.Namespace(product=SPEC.name)) == 0  # it saw that mark
    assert "broken mark lifted" in capsys.readouterr().out and _view(catalog, snap.id).broken is None
