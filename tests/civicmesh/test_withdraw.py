"""Withdrawing and quarantining snapshots: the current pointer moves back to the last good one,
`asOf` skips them, identical content never comes back, and every change (or refusal) is chained."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.catalog import (
    Catalog,
    SnapshotWithdrawn,
    SystemAuthority,
    WithdrawError,
    WithdrawRefused,
)
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.snapshots import WrittenSnapshot, write_snapshot
from policies.decision import Decision

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests.",
    columns=(ColumnSpec("request_id", "varchar"), ColumnSpec("contact", "varchar")),
    key="request_id",
)
# The CLI passes the policy engine's `grant` decision; the build its own rule.
OWNER = Decision(True, "alice", SPEC.name, "grant", "p, owner, public_works, *, *", "alice owns it", "v1")
PII_GATE = SystemAuthority(rule="civicmesh PII gate", reason="undeclared PII in the current snapshot")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _written(tmp_path: Path, contact: str) -> WrittenSnapshot:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'SR-1' AS request_id, ? AS contact", [contact])
    return write_snapshot(con, "t", tmp_path / "snapshots")


def _three(tmp_path: Path, catalog: Catalog) -> list[str]:
    """Three snapshots published a day apart; the last is current."""
    return [
        catalog.publish(SPEC, _written(tmp_path, f"v{i}"), now=T0 + timedelta(days=i)).id for i in range(3)
    ]


def test_withdrawing_the_current_snapshot_moves_current_to_the_previous_one(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    s0, s1, s2 = _three(tmp_path, catalog)
    version = catalog.version()
    result = catalog.withdraw(SPEC.name, None, "wrong totals", "alice", authority=OWNER, access_log=log)
    assert result.moved and result.snapshot.id == s2 and result.current.id == s1
    assert catalog.current(SPEC.name).id == s1
    assert catalog.version() != version  # gateways notice at their next poll
    listed = {s.id: s for s in catalog.snapshots(SPEC.name)}
    assert listed[s2].status == "withdrawn" and not listed[s2].servable
    assert (listed[s2].status_reason, listed[s2].status_actor) == ("wrong totals", "alice")
    assert listed[s1].status == listed[s0].status == "published"


def test_the_withdrawal_is_one_chained_record_naming_actor_snapshot_and_rule(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    _, s1, s2 = _three(tmp_path, catalog)
    result = catalog.withdraw(SPEC.name, s2, " wrong totals ", "alice", authority=OWNER, access_log=log)
    [record] = list(log.rows())
    assert record["seq"] == result.access_log_seq
    assert (record["action"], record["subject"], record["decision"]) == ("withdraw", "alice", "allow")
    assert (record["product"], record["snapshot_id"], record["rule"]) == (SPEC.name, s2, OWNER.rule)
    assert f"current moved to {s1}" in record["reason"]
    assert "wrong totals" not in record["reason"]  # no free text in the log, only its digest
    assert "reason sha256:" in record["reason"]
    assert verify_report(log).ok


def test_withdrawing_the_only_snapshot_leaves_nothing_current(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    only = catalog.publish(SPEC, _written(tmp_path, "v0"))
    result = catalog.withdraw(SPEC.name, only.id, "bad", "alice", authority=OWNER, access_log=log)
    assert result.moved and result.current is None
    entry = catalog.entry(SPEC.name)
    assert entry is not None and entry.current is None


def test_withdrawing_an_older_snapshot_keeps_current_and_hides_it_from_as_of(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    s0, s1, s2 = _three(tmp_path, catalog)
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(days=1, hours=1)).id == s1
    result = catalog.withdraw(SPEC.name, s1, "bad day", "alice", authority=OWNER, access_log=log)
    assert not result.moved and result.current.id == s2
    # asOf a time when s1 was current: the last good snapshot published at or before then
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(days=1, hours=1)).id == s0
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(days=5)).id == s2
    assert catalog.snapshot(s1).status == "withdrawn"  # a cursor into it can tell


def test_as_of_with_no_good_snapshot_before_it_finds_nothing(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    s0, _, _ = _three(tmp_path, catalog)
    catalog.withdraw(SPEC.name, s0, "bad", "alice", authority=OWNER, access_log=log)
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(hours=1)) is None


def test_current_moves_past_withdrawn_and_removed_snapshots(
    tmp_path: Path, catalog: Catalog, log: AccessLog, engine
) -> None:
    from meshcore.catalog import snapshots_table

    s0, s1, s2 = _three(tmp_path, catalog)
    catalog.withdraw(SPEC.name, s1, "bad", "alice", authority=OWNER, access_log=log)
    assert catalog.withdraw(SPEC.name, s2, "bad", "alice", authority=OWNER, access_log=log).current.id == s0
    s3 = catalog.publish(SPEC, _written(tmp_path, "v3"), now=T0 + timedelta(days=3)).id
    with engine.begin() as conn:  # retention removed s0 meanwhile
        conn.execute(snapshots_table.update().where(snapshots_table.c.id == s0).values(removed_at=T0))
    result = catalog.withdraw(SPEC.name, s3, "bad", "alice", authority=OWNER, access_log=log)
    assert result.current is None


def test_a_leak_in_the_current_snapshot_quarantines_it(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    """What the build does when its PII gate finds an undeclared PII column in the current snapshot."""
    _, s1, s2 = _three(tmp_path, catalog)
    finding = "contact: undeclared PII (<- stg_requests.contact <- source raw.requests.email)"
    result = catalog.withdraw(
        SPEC.name, None, finding, "civicmesh", kind="quarantined", authority=PII_GATE, access_log=log
    )
    assert result.snapshot.id == s2 and result.snapshot.status == "quarantined"
    assert result.snapshot.status_reason == finding
    entry = catalog.entry(SPEC.name)
    assert entry.current.id == s1
    [record] = list(log.rows())
    assert (record["action"], record["subject"], record["rule"]) == ("quarantine", "civicmesh", PII_GATE.rule)
    assert verify_report(log).ok


def test_a_refused_withdrawal_changes_nothing_and_is_chained_as_a_denial(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    _, _, s2 = _three(tmp_path, catalog)
    refused = Decision(False, "bob", SPEC.name, "grant", None, "bob holds no grant right here", "v1")
    with pytest.raises(WithdrawRefused, match="bob may not withdraw"):
        catalog.withdraw(SPEC.name, None, "mine now", "bob", authority=refused, access_log=log)
    assert catalog.current(SPEC.name).id == s2
    assert all(s.servable for s in catalog.snapshots(SPEC.name))
    [record] = list(log.rows())
    assert (record["decision"], record["status"], record["subject"]) == ("deny", 403, "bob")
    assert (record["reason"], record["policy_version"]) == (refused.reason, "v1")
    assert record["error_code"] == "FORBIDDEN"
    assert verify_report(log).ok


@pytest.mark.parametrize(
    ("product", "snapshot", "reason", "kind", "message"),
    [
        ("public_works.nothing", None, "x", "withdrawn", "no product named"),
        (SPEC.name, "public_works.service_requests@nope", "x", "withdrawn", "has no snapshot"),
        (SPEC.name, None, "   ", "withdrawn", "a reason"),
        (SPEC.name, None, "x" * 2001, "withdrawn", "a reason"),
        (SPEC.name, None, "x", "deleted", "kind must be one of"),
    ],
)
def test_invalid_withdrawals_change_nothing(
    tmp_path: Path, catalog: Catalog, log: AccessLog, product, snapshot, reason, kind, message
) -> None:
    ids = _three(tmp_path, catalog)
    with pytest.raises(WithdrawError, match=message):
        catalog.withdraw(product, snapshot, reason, "alice", kind, authority=OWNER, access_log=log)
    assert catalog.current(SPEC.name).id == ids[-1]
    assert list(log.rows()) == []


def test_a_snapshot_is_withdrawn_once_and_of_its_own_product_only(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    _, _, s2 = _three(tmp_path, catalog)
    other = replace(SPEC, department="environment", product="air_quality", owner="erin@city.example")
    foreign = catalog.publish(other, _written(tmp_path / "other", "x")).id
    with pytest.raises(WithdrawError, match="has no snapshot"):
        catalog.withdraw(SPEC.name, foreign, "x", "alice", authority=OWNER, access_log=log)
    catalog.withdraw(SPEC.name, s2, "bad", "alice", authority=OWNER, access_log=log)
    with pytest.raises(WithdrawError, match="already withdrawn"):
        catalog.withdraw(SPEC.name, s2, "again", "alice", authority=OWNER, access_log=log)
    assert len(list(log.rows())) == 1


def test_the_same_content_and_spec_are_never_published_again(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    _, s1, s2 = _three(tmp_path, catalog)
    catalog.withdraw(SPEC.name, s2, "leaks contact", "alice", authority=OWNER, access_log=log)
    with pytest.raises(SnapshotWithdrawn, match=f"withdrawn as snapshot {s2}"):
        catalog.publish(SPEC, _written(tmp_path, "v2"))
    assert catalog.current(SPEC.name).id == s1
    # the owner declares the leaking column's mask: the same bytes under the new spec may go out
    fixed = replace(SPEC, columns=(SPEC.columns[0], ColumnSpec("contact", "varchar", "", ("pii",), "hash")))
    republished = catalog.publish(fixed, _written(tmp_path, "v2"))
    assert republished.id not in (s1, s2) and catalog.current(SPEC.name).id == republished.id
