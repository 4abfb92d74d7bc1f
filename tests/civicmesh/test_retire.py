"""Retiring a product: it leaves discovery and is never published again under its name, while its
snapshots stay as servable history (`asOf`, listing, backups) and the change is chained in the log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from test_withdraw import OWNER, SPEC, T0, _three, _written

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.catalog import RETIRED, Catalog, SnapshotWithdrawn, WithdrawError, WithdrawRefused
from policies.decision import Decision


def test_a_retired_product_leaves_discovery_and_keeps_its_history(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    s0, s1, s2 = _three(tmp_path, catalog)
    version = catalog.version()
    result = catalog.withdraw(
        SPEC.name, None, "replaced by backlog", "alice", RETIRED, authority=OWNER, access_log=log
    )
    assert result.moved and result.current is None and result.snapshot.id == s2
    assert catalog.version() != version  # gateways reload their catalog at the next poll
    assert SPEC.name not in {e.spec.name for e in catalog.entries()}  # gone from discovery
    assert SPEC.name in {e.spec.name for e in catalog.entries(include_retired=True)}
    entry = catalog.entry(SPEC.name)
    assert entry is not None and entry.retired == "replaced by backlog" and entry.current is None
    # history: every snapshot still listed and servable as of its time, the last one included
    assert [s.id for s in catalog.snapshots(SPEC.name)] == [s2, s1, s0]
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(days=1, hours=1)).id == s1
    assert catalog.snapshot_as_of(SPEC.name, T0 + timedelta(days=5)).id == s2
    [record] = list(log.rows())
    assert (record["action"], record["subject"], record["decision"]) == ("retire", "alice", "allow")
    assert (record["product"], record["snapshot_id"]) == (SPEC.name, s2)
    assert "replaced by backlog" not in record["reason"]  # only a digest of the free text
    assert verify_report(log).ok


def test_a_retired_product_is_never_published_again(tmp_path: Path, catalog: Catalog, log: AccessLog) -> None:
    _three(tmp_path, catalog)
    catalog.withdraw(SPEC.name, None, "gone", "alice", RETIRED, authority=OWNER, access_log=log)
    with pytest.raises(SnapshotWithdrawn, match="was retired"):
        catalog.publish(SPEC, _written(tmp_path, "brand new content"))
    assert catalog.entry(SPEC.name).current is None
    with pytest.raises(WithdrawError, match="no current snapshot"):
        catalog.withdraw(SPEC.name, None, "again", "alice", RETIRED, authority=OWNER, access_log=log)


def test_only_the_current_snapshot_retires_a_product(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    s0, _, s2 = _three(tmp_path, catalog)
    with pytest.raises(WithdrawError, match="takes its current snapshot"):
        catalog.withdraw(SPEC.name, s0, "old one", "alice", RETIRED, authority=OWNER, access_log=log)
    assert catalog.entry(SPEC.name).retired is None and catalog.current(SPEC.name).id == s2
    assert list(log.rows()) == []  # nothing changed, nothing recorded


def test_a_refused_retirement_changes_nothing_and_is_chained_as_a_denial(
    tmp_path: Path, catalog: Catalog, log: AccessLog
) -> None:
    _, _, s2 = _three(tmp_path, catalog)
    refused = Decision(False, "bob", SPEC.name, "grant", None, "bob holds no grant right here", "v1")
    with pytest.raises(WithdrawRefused):
        catalog.withdraw(SPEC.name, None, "mine", "bob", RETIRED, authority=refused, access_log=log)
    assert catalog.entry(SPEC.name).retired is None and catalog.current(SPEC.name).id == s2
    [record] = list(log.rows())
    assert (record["action"], record["decision"], record["status"]) == ("retire", "deny", 403)
    assert verify_report(log).ok
