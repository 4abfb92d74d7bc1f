"""Attack tests: prefixes, injected separators, client-chosen domains, impersonated approvals."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_specs import col, spec

from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.directory import parse_directory
from policies.engine import PolicyEngine
from policies.grants import AccessRequests
from policies.names import PolicyError
from policies.policyfile import parse_policy

ORDERS = spec("sales.orders", "restricted", col("amount", "double"))
ORDERS_PII = spec("sales.orders_pii", "restricted", col("customer", mask="redact"))


def append(policy_dir: Path, *lines: str) -> None:
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def test_prefix_product_name_does_not_match(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine]
) -> None:
    append(
        policy_dir,
        "p, analyst, sales, sales.orders, discover",
        "p, analyst, sales, sales.orders, read",
        "g, bob, analyst, sales",
        "g, frank, owner, sales",
    )
    engine = make_engine()
    assert engine.decide("bob", ORDERS, "read").allowed
    assert not engine.decide("bob", ORDERS_PII, "read").allowed


@pytest.mark.parametrize(
    "line",
    [
        "p, analyst, sales, sales.orders,x, read",
        "p, analyst], sales, sales.orders, read",
        "p, analyst, sales, sales.orders[0], read",
        "p, analyst, sales, ^sales.orders, read",
        "p, analyst, sales, sales.orders.*, read",
        "p, analyst, *, **, read",
        "g, bob, analyst, *",
        "p, analyst, sales, eval(1), read",
        "p, analyst, sales, sales.orders, fly",
        "p, analyst, sales, hr.employees, read",
    ],
)
def test_bad_policy_lines_are_refused(
    line: str, policy_dir: Path, make_engine: Callable[..., PolicyEngine]
) -> None:
    _, problems = parse_policy(line + "\n")
    assert problems, line
    good = make_engine()
    version = good.version
    append(policy_dir, line)
    assert good.refresh_if_changed() is False
    assert good.last_error and "policy.csv" in good.last_error
    assert good.version == version  # the last good policy stays
    with pytest.raises(PolicyError):
        make_engine()  # and a fresh load refuses it outright


@pytest.mark.parametrize("name", ["eve,owner", "eve]", "eve[0]", "eve owner", "eve\n"])
def test_bad_user_names_are_refused(name: str) -> None:
    with pytest.raises(PolicyError):
        parse_directory(f"users:\n  {name!r}:\n    email: eve@city.example\n")


def test_user_named_like_a_role_is_refused() -> None:
    with pytest.raises(PolicyError, match="role"):
        parse_directory("roles:\n  owner: {}\nusers:\n  owner:\n    email: o@city.example\n")


@pytest.mark.parametrize("subject", ["alice,owner", "alice]", "", None, 42, "ALICE"])
def test_odd_subjects_are_denied(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec], subject: object
) -> None:
    decision = shipped_engine.decide(subject, products["public_works.service_requests"], "read")  # type: ignore[arg-type]
    assert not decision.allowed and decision.rule is None


def test_unknown_subject_product_action_deny(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec]
) -> None:
    sr = products["public_works.service_requests"]
    assert "unknown subject" in shipped_engine.decide("nobody", sr, "read").reason
    assert "unknown product" in shipped_engine.decide("alice", None, "read").reason
    assert "unknown action" in shipped_engine.decide("alice", sr, "delete").reason
    assert "unknown action" in shipped_engine.decide("alice", sr, "READ").reason
    bad = spec("public_works.service_requests", "top-secret")
    assert not shipped_engine.decide("alice", bad, "read").allowed


def test_domain_comes_from_the_product_only(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec]
) -> None:
    # No domain parameter exists, so a client cannot pick the domain it is judged in.
    assert list(inspect.signature(PolicyEngine.decide).parameters) == ["self", "subject", "product", "action"]
    # A role in one department gives nothing in another.
    assert not shipped_engine.decide("bob", products["finance.vendor_payments"], "read").allowed
    assert not shipped_engine.decide("alice", products["hr.employees"], "discover").allowed
    # Nobody can dress a product up as belonging to the reserved cross-department domain.
    fake = spec("global.everything", "public")
    assert not shipped_engine.decide("carol", fake, "discover").allowed
    assert not shipped_engine.decide("alice", fake, "read").allowed


def test_comma_in_requested_product_is_refused(
    make_engine: Callable[..., PolicyEngine], settings: Settings
) -> None:
    engine = make_engine()
    store = AccessRequests(engine, get_engine(settings.metadata_url))
    base = spec("hr.employees", "restricted")
    for bad in ("employees,read", "employees]", "employees x"):
        forged = ProductSpec(**{**base.__dict__, "product": bad})
        with pytest.raises(PolicyError):
            store.request("mallory", forged, "read", "audit", 1)
    with pytest.raises(PolicyError):
        store.request("mallory,frank", base, "read", "audit", 1)


def test_role_holder_cannot_request_role_only_actions(
    make_engine: Callable[..., PolicyEngine], settings: Settings, products: dict[str, ProductSpec]
) -> None:
    store = AccessRequests(make_engine(), get_engine(settings.metadata_url))
    for action in ("grant", "audit", "fly"):
        with pytest.raises(PolicyError):
            store.request("mallory", products["hr.employees"], action, "why not", 1)


@pytest.mark.parametrize(
    ("where", "twin"),
    [
        (
            "users",
            "  dana:\n    email: dana@city.example\n    department: public_works\n"
            "    attributes:\n      districts: [D1, D2, D3, D4, D5]\n",
        ),
        ("roles", "  supervisor:\n    description: reads everything\n"),
    ],
    ids=["user-widened-at-the-end", "role-unscoped-at-the-end"],
)
def test_a_key_given_twice_in_users_yaml_is_refused(
    where: str, twin: str, policy_dir: Path, make_engine: Callable[..., PolicyEngine]
) -> None:
    """YAML keeps the last of two equal keys: a second `dana:` (or `supervisor:`) under the one a
    reviewer read would silently widen dana's rows. The files are refused (the last good stays)."""
    engine = make_engine(check_interval=None)
    users = policy_dir / "users.yaml"
    text = users.read_text()
    at = text.index("\nusers:\n") if where == "roles" else len(text)
    users.write_text(text[:at] + ("\n" + twin if where == "roles" else twin) + text[at:])
    with pytest.raises(PolicyError, match=r"given twice"):
        parse_directory(users.read_text())
    assert engine.refresh_if_changed() is False and engine.rejected is not None
    assert engine.directory.users["dana"].attributes == {"districts": ("D3",)}
