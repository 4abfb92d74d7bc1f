"""Truth table: 7 personas x 9 demo products x 7 actions, written by hand from ARCHITECTURE.md 4-5,
and the one right over the mesh itself, `produce_lineage` (personas and the producer identity
`airflow` x job namespaces).

Letters: D discover, R read, P read_pii, E export, L lineage, A audit, G grant.
"""

from __future__ import annotations

import pytest

from meshcore.products import ProductSpec
from policies.decision import ACTIONS, SYSTEM_ACTIONS, RowFilter
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
    "public_works.open_request_contacts",  # confidential, PII, scope district
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
    #           svc_req    contacts   resp_t       traffic  collis      air    vendor      employees  score
    "alice":   ("DRPELAG", "DRPELAG", "DRPELAG",   "DRL",   "DR",       "DRL", "D",        "",        "DR"),
    "bob":     ("DR",      "D",       "DRL",       "DREL",  "DRE",      "DRL", "D",        "",        "DR"),
    "dana":    ("DR",      "DR",      "DRL",       "DRL",   "DR",       "DRL", "D",        "",        "DR"),
    "erin":    ("DR",      "D",       "DRL",       "DRL",   "DR",       "DRL", "DRPE",     "",        "DR"),
    "frank":   ("DR",      "D",       "DRL",       "DRL",   "DR",       "DRL", "D",        "DRPELAG", "DR"),
    "carol":   ("DLA",     "DLA",     "DLA",       "DLA",   "DLA",      "DLA", "DLA",      "DLA",     "DLA"),
    "mallory": ("DR",      "D",       "DRL",       "DRL",   "DR",       "DRL", "D",        "",        "DR"),
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
CONTACT_PII = {"requester_name": "hash", "requester_email": "hash", "requester_phone": "partial"}
GEO = {"lat": "generalize", "lon": "generalize"}

# (user, product, action) -> (masks, row filter), written by hand
MASKS_AND_SCOPE = [
    ("alice", "public_works.service_requests", "read", {}, None),
    ("alice", "public_works.service_requests", "export", {}, None),
    ("bob", "public_works.service_requests", "read", SR_PII, None),
    ("mallory", "public_works.service_requests", "read", SR_PII, None),
    ("dana", "public_works.service_requests", "read", SR_PII, RowFilter("district", ("D3",))),
    ("dana", "public_works.response_times", "read", {}, None),  # no scope column declared
    # confidential: the department's supervisor reads it masked and scoped, its owner whole
    ("dana", "public_works.open_request_contacts", "read", CONTACT_PII, RowFilter("district", ("D3",))),
    ("alice", "public_works.open_request_contacts", "read", {}, None),
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
    assert {u.name for u in shipped_engine.users()} == set(TABLE) | set(other_owners) | {"airflow"}
    for user, department in other_owners.items():
        assert shipped_engine.roles(user) == [("owner", department)]
    assert shipped_engine.roles("airflow") == [("lineage_producer", "global")]


# produce_lineage: (subject, job namespace) -> allowed, by hand from policy.csv. Only the producer
# identity holds it (`p, lineage_producer, global, *, produce_lineage`), in any namespace it names;
# owners and the auditor hold every product right but not this one. A subject outside the
# directory is denied whatever its name.
NAMESPACES = ("city-etl", "airflow://prod", "civicmesh")
PRODUCERS = {"airflow"}
PRODUCE_CELLS = [
    (user, namespace, user in PRODUCERS) for user in (*TABLE, "airflow", "nobody") for namespace in NAMESPACES
]


@pytest.mark.parametrize(("user", "namespace", "expected"), PRODUCE_CELLS)
def test_produce_lineage_truth_table(
    shipped_engine: PolicyEngine, user: str, namespace: str, expected: bool
) -> None:
    decision = shipped_engine.decide_system(user, "produce_lineage", namespace)
    assert decision.allowed is expected, decision.reason
    assert decision.policy_version == shipped_engine.version and decision.product == namespace
    if expected:
        assert decision.rule == "p, lineage_producer, global, *, produce_lineage"
        assert decision.source is not None and decision.source.startswith("policy.csv:")
        assert "lineage_producer" in decision.reason
    else:
        assert decision.rule is None


@pytest.mark.parametrize("user", [*TABLE, "airflow"])
def test_a_system_right_is_no_product_right(
    shipped_engine: PolicyEngine, products: dict[str, ProductSpec], user: str
) -> None:
    for product in products.values():
        for action in SYSTEM_ACTIONS:
            assert not shipped_engine.decide(user, product, action).allowed
    # and the producer identity reads no rows (it may discover what any staff member may)
    assert not any(shipped_engine.decide("airflow", p, "read").allowed for p in products.values())


def test_produce_lineage_may_name_one_namespace(policy_dir, make_engine) -> None:
    policy = policy_dir / "policy.csv"
    text = policy.read_text().replace(
        "p, lineage_producer, global, *, produce_lineage",
        "p, lineage_producer, global, city-etl, produce_lineage",
    )
    policy.write_text(text)
    engine = make_engine()
    assert engine.decide_system("airflow", "produce_lineage", "city-etl").allowed
    assert not engine.decide_system("airflow", "produce_lineage", "other-etl").allowed
    assert not engine.decide_system("alice", "produce_lineage", "city-etl").allowed


def test_produce_lineage_is_granted_in_the_global_domain_only() -> None:
    from policies.policyfile import parse_policy

    rules, problems = parse_policy(
        "p, owner, finance, *, produce_lineage\np, owner, global, *, produce_lineage"
    )
    assert [p.code for p in problems] == ["system-action"] and len(rules) == 1
