"""Truth table: 7 personas x 8 demo products x 7 actions, written by hand from ARCHITECTURE.md 4-5.

Letters: D discover, R read, P read_pii, E export, L lineage, A audit, G grant.
"""

from __future__ import annotations

import pytest

from civicmesh.products import ProductSpec
from policies.decision import ACTIONS, RowFilter
from policies.engine import PolicyEngine

LETTER = {
    "discover": "D",
    "read": "R",
    "read_pii": "P",
    "export": "E",
    "lineage": "L",
    "audit": "A",
    "grant": "G",
}

PRODUCTS = (
    "public_works.service_requests",  # internal, PII, scope district
    "public_works.response_times",  # public
    "transportation.traffic_counts",  # public
    "transportation.collisions",  # internal, lat/lon generalize
    "environment.air_quality",  # public
    "finance.vendor_payments",  # confidential
    "hr.employees",  # restricted
    "city_ops.district_scorecard",  # internal
)

# fmt: off
TABLE: dict[str, tuple[str, ...]] = {
    #            svc_req    resp_times  traffic  collisions  air    vendor_pay  employees  scorecard
    "alice":   ("DRPELAG", "DRPELAG",   "DRL",   "DR",       "DRL", "D",        "",        "DR"),
    "bob":     ("DR",      "DRL",       "DREL",  "DRE",      "DRL", "D",        "",        "DR"),
    "dana":    ("DR",      "DRL",       "DRL",   "DR",       "DRL", "D",        "",        "DR"),
    "erin":    ("DR",      "DRL",       "DRL",   "DR",       "DRL", "DRPE",     "",        "DR"),
    "frank":   ("DR",      "DRL",       "DRL",   "DR",       "DRL", "D",        "DRPELAG", "DR"),
    "carol":   ("DLA",     "DLA",       "DLA",   "DLA",      "DLA", "DLA",      "DLA",     "DLA"),
    "mallory": ("DR",      "DRL",       "DRL",   "DR",       "DRL", "D",        "",        "DR"),
}
# fmt: on

CELLS = [
    (user, product, action, LETTER[action] in TABLE[user][i])
    for user in TABLE
    for i, product in enumerate(PRODUCTS)
    for action in ACTIONS
]


@pytest.mark.parametrize(("user", "product", "action", "expected"), CELLS)
def test_truth_table(
    shipped_engine: PolicyEngine,
    products: dict[str, ProductSpec],
    user: str,
    product: str,
    action: str,
    expected: bool,
) -> None:
    decision = shipped_engine.decide(user, products[product], action)
    assert decision.allowed is expected, decision.reason
    assert decision.policy_version == shipped_engine.version
    assert decision.reason
    if expected:
        assert decision.rule
    else:
        assert decision.rule is None and not decision.masks and decision.row_filter is None


SR_PII = {"requester_name": "redact", "requester_email": "hash", "requester_phone": "partial"}
GEO = {"lat": "generalize", "lon": "generalize"}

# (user, product, action) -> (masks, row filter), written by hand
MASKS_AND_SCOPE = [
    ("alice", "public_works.service_requests", "read", {}, None),
    ("alice", "public_works.service_requests", "export", {}, None),
    ("bob", "public_works.service_requests", "read", SR_PII, None),
    ("mallory", "public_works.service_requests", "read", SR_PII, None),
    ("dana", "public_works.service_requests", "read", SR_PII, RowFilter("district", ("D3",))),
    ("dana", "public_works.response_times", "read", {}, None),  # no scope column declared
    ("dana", "city_ops.district_scorecard", "read", {}, None),
    ("bob", "transportation.collisions", "read", GEO, None),
    ("bob", "transportation.collisions", "export", GEO, None),
    ("alice", "transportation.collisions", "read", GEO, None),
    ("erin", "finance.vendor_payments", "read", {}, None),
    ("erin", "finance.vendor_payments", "export", {}, None),
    ("frank", "hr.employees", "read", {}, None),
    ("erin", "public_works.service_requests", "read", SR_PII, None),
]


@pytest.mark.parametrize(("user", "product", "action", "masks", "scope"), MASKS_AND_SCOPE)
def test_masks_and_row_filters(
    shipped_engine: PolicyEngine,
    products: dict[str, ProductSpec],
    user: str,
    product: str,
    action: str,
    masks: dict[str, str],
    scope: RowFilter | None,
) -> None:
    decision = shipped_engine.decide(user, products[product], action)
    assert decision.allowed
    assert decision.masks == masks
    assert decision.row_filter == scope


def test_scope_applies_whichever_rule_granted_the_read(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec]
) -> None:
    # collisions declaring the district scope column: dana reads it through the internal rule,
    # and is still limited to D3; alice (owner of public_works, not transportation) is unscoped.
    base = products["transportation.collisions"]
    scoped = ProductSpec(**{**base.__dict__, "columns": (*base.columns,), "scope_column": "district"})
    dana = shipped_engine.decide("dana", scoped, "read")
    assert dana.allowed and dana.rule == "builtin:classification:internal"
    assert dana.row_filter == RowFilter("district", ("D3",))
    assert shipped_engine.decide("alice", scoped, "read").row_filter is None


def test_rule_and_reason_name_the_role(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec]
) -> None:
    decision = shipped_engine.decide("alice", products["public_works.service_requests"], "read_pii")
    assert decision.rule == "p, owner, public_works, **, read_pii"
    assert decision.source is not None and decision.source.startswith("policy.csv:")
    assert "owner" in decision.reason
    carol = shipped_engine.decide("carol", products["hr.employees"], "discover")
    assert carol.rule == "p, auditor, global, **, discover"
    denied = shipped_engine.decide("carol", products["public_works.service_requests"], "read")
    assert "auditor" in denied.reason


def test_users_and_roles(shipped_engine: PolicyEngine) -> None:
    alice = shipped_engine.user("alice")
    assert alice is not None and alice.email == "alice@city.example" and alice.department == "public_works"
    dana = shipped_engine.user("dana")
    assert dana is not None and dana.attributes == {"districts": ("D3",)}
    assert shipped_engine.roles("alice") == [("owner", "public_works")]
    assert shipped_engine.roles("carol") == [("auditor", "global")]
    assert shipped_engine.roles("mallory") == []
    assert shipped_engine.user("nobody") is None
    other_owners = {
        "tomas": "transportation",
        "esther": "environment",
        "fiona": "finance",
        "olivia": "city_ops",
    }
    assert {u.name for u in shipped_engine.users()} == set(TABLE) | set(other_owners)
    for user, department in other_owners.items():
        assert shipped_engine.roles(user) == [("owner", department)]
