"""Runtime grants: request, approve by an owner (never the requester), expiry, revocation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.engine import PolicyEngine
from policies.grants import AccessRequests
from policies.names import PolicyError


@pytest.fixture
def engine(make_engine: Callable[..., PolicyEngine]) -> PolicyEngine:
    return make_engine(check_interval=None)


@pytest.fixture
def store(engine: PolicyEngine, settings: Settings) -> AccessRequests:
    return AccessRequests(engine, get_engine(settings.metadata_url))


def test_approved_grant_allows_and_changes_version(
    engine: PolicyEngine, store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    employees = products["hr.employees"]
    assert not engine.decide("mallory", employees, "read").allowed
    request = store.request("mallory", employees, "read", "pay equity review", 30)
    assert request.state() == "pending"
    assert engine.refresh_if_changed() is False  # pending requests grant nothing
    before = engine.version
    store.approve(request.id, "frank")
    assert engine.refresh_if_changed() is True
    assert engine.version != before
    decision = engine.decide("mallory", employees, "read")
    assert decision.allowed
    assert decision.source == f"access request #{request.id}"
    assert "frank" in decision.reason
    assert decision.masks == {"name": "hash", "email": "hash", "salary": "redact"}
    # a read grant is only a read grant
    assert not engine.decide("mallory", employees, "export").allowed
    assert [e[2] for e in store.events(request.id)] == ["requested", "approved"]


def test_requester_cannot_approve_own_request(
    engine: PolicyEngine, store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    request = store.request("frank", products["hr.employees"], "read", "mine", 5)
    with pytest.raises(PolicyError, match="requester"):
        store.approve(request.id, "frank")
    assert store.get(request.id).status == "pending"


@pytest.mark.parametrize("approver", ["alice", "erin", "carol", "mallory", "nobody"])
def test_only_an_owner_of_the_department_approves(
    approver: str, store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    request = store.request("bob", products["hr.employees"], "read", "x", 5)
    with pytest.raises(PolicyError):
        store.approve(request.id, approver)


def test_expired_grant_denies(
    engine: PolicyEngine, settings: Settings, products: dict[str, ProductSpec]
) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    old = AccessRequests(engine, get_engine(settings.metadata_url), clock=lambda: past)
    request = old.request("mallory", products["hr.employees"], "read", "last week", 1)
    old.approve(request.id, "frank")
    engine.refresh_if_changed()
    assert old.get(request.id).state() == "expired"
    assert not engine.decide("mallory", products["hr.employees"], "read").allowed


def test_grant_expires_while_engine_runs(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    now = [datetime.now(UTC)]
    engine = make_engine(check_interval=None, clock=lambda: now[0])
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    request = store.request("mallory", products["hr.employees"], "read", "one day", 1)
    store.approve(request.id, "frank")
    engine.refresh_if_changed()
    assert engine.decide("mallory", products["hr.employees"], "read").allowed  # cached now
    now[0] += timedelta(days=1, seconds=1)
    # No refresh call and no polling: decide() itself notices the expiry before using the cache.
    assert not engine.decide("mallory", products["hr.employees"], "read").allowed


def test_revoked_grant_denies(
    engine: PolicyEngine, store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    request = store.request("mallory", products["hr.employees"], "discover", "x", 5)
    store.approve(request.id, "frank")
    engine.refresh_if_changed()
    assert engine.decide("mallory", products["hr.employees"], "discover").allowed
    with pytest.raises(PolicyError):
        store.revoke(request.id, "bob")  # neither grantee nor owner
    store.revoke(request.id, "frank")
    engine.refresh_if_changed()
    assert not engine.decide("mallory", products["hr.employees"], "discover").allowed
    assert store.get(request.id).state() == "revoked"
    with pytest.raises(PolicyError):
        store.approve(request.id, "frank")  # a revoked request cannot come back


def test_revoked_role_denies(
    policy_dir: Path, engine: PolicyEngine, products: dict[str, ProductSpec]
) -> None:
    assert engine.decide("bob", products["transportation.collisions"], "export").allowed
    path = policy_dir / "policy.csv"
    path.write_text(path.read_text().replace("g, bob, analyst, transportation\n", ""))
    assert engine.refresh_if_changed() is True
    assert not engine.decide("bob", products["transportation.collisions"], "export").allowed
    assert engine.roles("bob") == []


def test_list_and_reject(
    engine: PolicyEngine, store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    a = store.request("mallory", products["hr.employees"], "read", "a", 2)
    b = store.request("bob", products["hr.employees"], "read_pii", "b", 2)
    store.reject(b.id, "frank", "no need")
    assert [r.id for r in store.list()] == [a.id, b.id]
    assert [r.id for r in store.list(subject="bob")] == [b.id]
    assert store.get(b.id).state() == "rejected"
    with pytest.raises(PolicyError):
        store.request("mallory", products["hr.employees"], "read", "  ", 2)
    with pytest.raises(PolicyError):
        store.request("mallory", products["hr.employees"], "read", "x", 0)


def test_load_from_settings(settings: Settings, policy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVICMESH_POLICIES_DIR", str(policy_dir))
    engine = PolicyEngine.load(settings)
    assert engine.policies_dir == policy_dir
    assert engine.user("alice") is not None


def test_a_nul_character_in_a_purpose_or_note_is_bad_input(
    store: AccessRequests, products: dict[str, ProductSpec]
) -> None:
    """PostgreSQL refuses NUL in text: a purpose or note holding one was an internal error there
    (and stored as is on SQLite). It is refused, on both, as the input it is."""
    employees = products["hr.employees"]
    with pytest.raises(PolicyError, match="purpose"):
        store.request("mallory", employees, "read", "pay\0review", 30)
    request = store.request("mallory", employees, "read", "pay equity review", 30)
    with pytest.raises(PolicyError, match="note"):
        store.approve(request.id, "frank", note="ok\0")
    assert store.get(request.id).status == "pending"
    store.approve(request.id, "frank", note="ok")
    with pytest.raises(PolicyError, match="note"):
        store.revoke(request.id, "frank", note="\0")
