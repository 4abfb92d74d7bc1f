"""Automatic quarantine on a real catalog and access log: only a current snapshot that serves the
leaking column unmasked is taken out of service, and the gate result says so."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from lineage.classification import NOT_DESCRIBED, PiiFinding
from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import write_snapshot
from meshcore.store import get_engine
from orchestration.gate import GateResult
from orchestration.quarantine import quarantine_leaks

SPEC = ProductSpec(
    "public_works",
    "callbacks",
    "public",
    "alice@city.example",
    "",
    (
        ColumnSpec("request_id", "varchar"),
        ColumnSpec("phone", "varchar"),
        ColumnSpec("name", "varchar", mask="hash"),
    ),
)
PATH = ("public_works.callbacks.phone", "raw_public_works.service_requests.requester_phone [pii]")


@pytest.fixture
def mesh(tmp_path: Path) -> tuple[Catalog, AccessLog, str]:
    engine = get_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    catalog, log = Catalog(engine).ensure_schema(), AccessLog(engine).ensure_schema()
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'SR-1' AS request_id, '555-0100' AS phone, 'Ann' AS name")
    snapshot = catalog.publish(SPEC, write_snapshot(con, "t", tmp_path / "snapshots"))
    return catalog, log, snapshot.id


def _gate(*leaks: PiiFinding) -> dict[str, GateResult]:
    return {SPEC.name: GateResult(SPEC.name, leaks=leaks)}


def test_a_leaking_column_of_the_current_snapshot_quarantines_it(mesh) -> None:
    catalog, log, snapshot_id = mesh
    leak = PiiFinding(SPEC.name, "phone", "undeclared_pii", PATH)
    gates = quarantine_leaks(catalog, log, _gate(leak), "run-1")
    assert catalog.current(SPEC.name) is None
    (snapshot,) = catalog.snapshots(SPEC.name)
    assert snapshot.status == "quarantined" and "requester_phone [pii]" in snapshot.status_reason
    (check,) = gates[SPEC.name].failed
    assert check.name == "pii_gate.quarantine" and f"{snapshot_id} served phone" in check.message
    (record,) = [r for r in log.rows() if r["action"] == "quarantine"]
    assert (record["subject"], record["rule"], record["snapshot_id"]) == (
        "civicmesh build",
        "civicmesh PII gate",
        snapshot_id,
    )


@pytest.mark.parametrize(
    "leak",
    [
        PiiFinding(SPEC.name, "name", "undeclared_pii", PATH),  # served masked by its snapshot's spec
        PiiFinding(SPEC.name, "new_column", "undeclared_pii", PATH),  # not in the current snapshot
        PiiFinding(SPEC.name, "phone", "unknown_lineage", PATH[:1], NOT_DESCRIBED, unknown=True),
    ],
)
def test_no_quarantine_without_a_leak_the_current_snapshot_serves(mesh, leak: PiiFinding) -> None:
    catalog, log, snapshot_id = mesh
    gates = quarantine_leaks(catalog, log, _gate(leak), "run-1")
    assert catalog.current(SPEC.name).id == snapshot_id and gates[SPEC.name].failed == ()
    assert not [r for r in log.rows() if r["action"] == "quarantine"]


def test_older_snapshots_serving_the_same_leak_are_quarantined_too(mesh, tmp_path: Path) -> None:
    """Before: only the current one was, and "current" moved back to the previous snapshot, which
    served the same phone numbers (as did `asOf` any earlier time)."""
    catalog, log, first = mesh
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'SR-2' AS request_id, '555-0199' AS phone, 'Bo' AS name")
    second = catalog.publish(SPEC, write_snapshot(con, "t", tmp_path / "snapshots")).id
    leak = PiiFinding(SPEC.name, "phone", "undeclared_pii", PATH)
    gates = quarantine_leaks(catalog, log, _gate(leak), "run-2")
    assert catalog.current(SPEC.name) is None
    assert {s.id: s.status for s in catalog.snapshots(SPEC.name)} == {
        first: "quarantined",
        second: "quarantined",
    }
    assert [c.message.split()[1] for c in gates[SPEC.name].failed] == [first, second]  # oldest first
    assert gates[SPEC.name].failed[-1].message.endswith("current is now none")
    records = [r for r in log.rows() if r["action"] == "quarantine"]
    assert [r["snapshot_id"] for r in records] == [first, second] and verify_report(log).ok


def test_the_current_moves_back_to_the_newest_snapshot_without_the_leak(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    catalog, log = Catalog(engine).ensure_schema(), AccessLog(engine).ensure_schema()
    con = duckdb.connect()
    masked = ProductSpec(
        **{
            **SPEC.__dict__,
            "columns": (*SPEC.columns[:1], ColumnSpec("phone", "varchar", mask="partial"), SPEC.columns[2]),
        }
    )
    ids = []
    for spec, phone in ((masked, "555-0100"), (SPEC, "555-0101"), (SPEC, "555-0102")):
        con.execute(
            f"CREATE OR REPLACE TABLE t AS SELECT 'SR-1' AS request_id, '{phone}' AS phone, 'Ann' AS name"
        )
        ids.append(catalog.publish(spec, write_snapshot(con, "t", tmp_path / "snapshots")).id)
    quarantine_leaks(catalog, log, _gate(PiiFinding(SPEC.name, "phone", "undeclared_pii", PATH)), "run-3")
    assert catalog.current(SPEC.name).id == ids[0]  # it served the phone masked, by its own spec
    assert [s.status for s in catalog.snapshots(SPEC.name)] == ["quarantined", "quarantined", "published"]
