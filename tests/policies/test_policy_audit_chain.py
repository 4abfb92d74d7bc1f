"""Grant and policy changes land in the hash-chained access log, atomically with the change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.engine import PolicyEngine
from policies.grants import AccessRequests
from tests.store_faults import allow_inserts, refuse_inserts

ADMIN = ("request", "approve", "reject", "revoke", "expire", "policy_version")


def _log(settings: Settings) -> AccessLog:
    return AccessLog(get_engine(settings.metadata_url))


def _admin(settings: Settings) -> list[dict]:
    from meshcore.accesslog import decode_row

    return [decode_row(r) for r in _log(settings).rows() if r["action"] in ADMIN]


def test_request_approve_reject_revoke_are_chained(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    employees = products["hr.employees"]
    first = store.request("mallory", employees, "read", "pay equity review for Jane Doe", 30)
    store.approve(first.id, "frank", note="ok for Jane")
    second = store.request("bob", employees, "read", "curious", 5)
    store.reject(second.id, "frank")
    store.revoke(first.id, "frank")
    records = [r for r in _admin(settings) if r["action"] != "policy_version"]
    assert [(r["action"], r["subject"]) for r in records] == [
        ("request", "mallory"),
        ("approve", "frank"),
        ("request", "bob"),
        ("reject", "frank"),
        ("revoke", "frank"),
    ]
    assert all(r["product"] == "hr.employees" for r in records)
    assert f"#{first.id}" in records[0]["reason"] and f"#{first.id}" in records[4]["reason"]
    assert records[1]["decision"] == "allow" and records[3]["decision"] == "deny"
    assert records[1]["roles"] == ["owner@hr"]
    # free text (purpose, note) may name people: it stays in the grant store, not the log
    assert not any("Jane" in r["reason"] for r in records)
    assert verify_report(_log(settings)).first_bad is None


def test_grant_change_fails_when_the_log_cannot_be_written(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    request = store.request("mallory", products["hr.employees"], "read", "x", 5)
    refuse_inserts(settings.metadata_url)
    with pytest.raises(Exception, match="no"):
        store.approve(request.id, "frank")
    assert store.get(request.id).status == "pending"  # rolled back with its log record
    allow_inserts(settings.metadata_url)
    store.approve(request.id, "frank")
    assert store.get(request.id).status == "approved"
    assert verify_report(_log(settings)).first_bad is None


def test_expiry_is_logged_once(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    now = [datetime.now(UTC)]
    engine = make_engine(check_interval=None, clock=lambda: now[0])
    other = make_engine(check_interval=None, clock=lambda: now[0])  # a second process's engine
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    request = store.request("mallory", products["hr.employees"], "read", "one day", 1)
    store.approve(request.id, "frank")
    engine.refresh_if_changed()
    other.refresh_if_changed()
    now[0] += timedelta(days=1, seconds=1)
    assert not engine.decide("mallory", products["hr.employees"], "read").allowed
    assert not other.decide("mallory", products["hr.employees"], "read").allowed
    expired = [r for r in _admin(settings) if r["action"] == "expire"]
    assert len(expired) == 1
    assert expired[0]["product"] == "hr.employees" and f"#{request.id}" in expired[0]["reason"]
    assert [e for _, _, e, _ in store.events(request.id)][-1] == "expired"
    assert verify_report(_log(settings)).first_bad is None


def test_policy_file_version_change_is_recorded_once(
    make_engine: Callable[..., PolicyEngine], settings: Settings, policy_dir: Path
) -> None:
    engine = make_engine(check_interval=None)
    make_engine(check_interval=None)  # same files, another process: nothing new
    versions = [r for r in _admin(settings) if r["action"] == "policy_version"]
    assert len(versions) == 1 and versions[0]["policy_version"] == engine.version
    old = engine.version
    policy = policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + "\ng, mallory, analyst, transportation\n")
    assert engine.refresh_if_changed() is True
    peer = make_engine(check_interval=None)  # starts after the change: already recorded
    versions = [r for r in _admin(settings) if r["action"] == "policy_version"]
    assert len(versions) == 2
    change = versions[1]
    assert change["rule"] == old and change["policy_version"] == engine.version == peer.version
    assert old in change["reason"] and engine.version in change["reason"]
    assert verify_report(_log(settings)).first_bad is None


def test_grant_only_changes_are_not_policy_versions(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    engine = make_engine(check_interval=None)
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    request = store.request("mallory", products["hr.employees"], "read", "x", 5)
    store.approve(request.id, "frank")
    assert engine.refresh_if_changed() is True
    assert [r["action"] for r in _admin(settings)].count("policy_version") == 1


def test_a_log_outage_does_not_stop_the_policy_loading(
    make_engine: Callable[..., PolicyEngine], settings: Settings, policy_dir: Path
) -> None:
    """Data requests fail closed on their own log writes; the policy itself must still load."""
    engine = make_engine(check_interval=None)
    refuse_inserts(settings.metadata_url)
    policy = policy_dir / "policy.csv"
    policy.write_text(policy.read_text() + "\ng, mallory, analyst, transportation\n")
    assert engine.refresh_if_changed() is True
    assert engine.last_error and "not logged" in engine.last_error
    assert engine.roles("mallory") == [("analyst", "transportation")]  # the new policy is in use
