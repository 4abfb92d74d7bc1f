"""A snapshot file checked against the checksum stored at publish, and the catalog's broken marks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog, SystemAuthority
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import WrittenSnapshot, integrity_problem, write_snapshot
from meshcore.store import get_engine

SPEC = ProductSpec(
    department="finance",
    product="vendor_payments",
    classification="confidential",
    owner="fiona@city.example",
    description="Payments.",
    columns=(ColumnSpec("payment_id", "integer"), ColumnSpec("amount", "double")),
    key="payment_id",
)
OWNER = SystemAuthority(rule="test", reason="owner")
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog(get_engine(f"sqlite:///{tmp_path / 'meta.db'}")).ensure_schema()


def _written(tmp_path: Path, offset: float) -> WrittenSnapshot:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT CAST(i AS INTEGER) AS payment_id, "
        f"i + {offset} AS amount FROM range(50) t(i)"
    )
    return write_snapshot(con, "t", tmp_path / "snapshots")


def test_an_intact_file_has_no_problem(tmp_path: Path) -> None:
    written = _written(tmp_path, 0.5)
    assert integrity_problem(written.path, written.checksum, written.byte_size) is None


def test_a_flipped_byte_a_truncation_and_a_missing_file_are_each_named(tmp_path: Path) -> None:
    written = _written(tmp_path, 0.5)
    data = written.path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    written.path.write_bytes(bytes(flipped))
    problem = integrity_problem(written.path, written.checksum, written.byte_size)
    assert problem is not None and problem.startswith("checksum mismatch")
    assert str(written.path) not in problem  # callers decide who may see the path
    written.path.write_bytes(data[:-10])
    assert integrity_problem(written.path, written.checksum, written.byte_size) == (
        f"size {len(data) - 10} B, expected {len(data)} B"
    )
    written.path.unlink()
    assert integrity_problem(written.path, written.checksum, written.byte_size) == "file missing"


def test_a_broken_mark_is_visible_moves_the_version_and_is_lifted_once(
    tmp_path: Path, catalog: Catalog
) -> None:
    snap = catalog.publish(SPEC, _written(tmp_path, 0.5))
    version = catalog.version()
    assert catalog.mark_broken(snap.id, "checksum mismatch (x)", "gateway h pid 1")
    assert not catalog.mark_broken(snap.id, "checksum mismatch (x)", "gateway h pid 2")  # idempotent
    assert catalog.version() != version
    [broken] = catalog.broken_snapshots(SPEC.name)
    assert broken.id == snap.id and broken.broken == "checksum mismatch (x)"
    assert catalog.current(SPEC.name).broken == "checksum mismatch (x)"
    assert catalog.broken_snapshots("finance.other") == []
    assert catalog.clear_broken(snap.id) and not catalog.clear_broken(snap.id)
    assert catalog.broken_snapshots() == [] and catalog.current(SPEC.name).broken is None
    with pytest.raises(LookupError):
        catalog.mark_broken("finance.vendor_payments@nope", "x", "y")


def test_withdrawing_moves_current_past_a_broken_snapshot_and_a_withdrawn_one_is_not_broken(
    tmp_path: Path, catalog: Catalog
) -> None:
    log = AccessLog(catalog.engine).ensure_schema()
    ids = [catalog.publish(SPEC, _written(tmp_path, i), now=T0 + timedelta(days=i)).id for i in range(3)]
    catalog.mark_broken(ids[1], "file missing", "test")
    result = catalog.withdraw(SPEC.name, None, "bad", "fiona", authority=OWNER, access_log=log)
    assert result.current.id == ids[0]
    catalog.withdraw(SPEC.name, ids[1], "broken anyway", "fiona", authority=OWNER, access_log=log)
    assert catalog.broken_snapshots() == []  # never served again: nothing for readiness to wait on
