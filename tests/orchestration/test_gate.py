"""The publish gate on dbt's own artifacts: the blast radius of a failure is the product and what is
built from it (the real builds in test_gate_builds.py show the same end to end)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from lineage.classification import PiiFinding
from meshcore.products import ColumnSpec, ProductSpec
from orchestration.gate import foreign_inputs, gate_products, stricter_inputs

# raw -> stg -> requests (product) -> scorecard (product, built from requests); raw2 -> sensors (product)
NODES = {
    "source.p.raw.requests": [],
    "source.p.raw.sensors": [],
    "model.p.stg": ["source.p.raw.requests"],
    "model.p.requests": ["model.p.stg"],
    "model.p.scorecard": ["model.p.requests"],
    "model.p.sensors": ["source.p.raw.sensors"],
}
PRODUCTS = {"requests": "model.p.requests", "scorecard": "model.p.scorecard", "sensors": "model.p.sensors"}
SPECS = [
    ProductSpec(
        "dept", name, "public", "o@city.example", "", (ColumnSpec("id", "varchar"),), model_unique_id=uid
    )
    for name, uid in PRODUCTS.items()
]


def _node(uid: str, parents: list[str], **extra: Any) -> dict[str, Any]:
    kind, _package, *rest = uid.split(".")
    name = rest[0] if kind == "test" else rest[-1]  # dbt: test.<package>.<name>.<hash>
    return {
        "unique_id": uid,
        "name": name,
        "resource_type": uid.split(".")[0],
        "depends_on": {"nodes": parents},
        "original_file_path": f"models/{name}.sql",
        "compiled_path": f"target/compiled/p/models/{name}.sql",
        **extra,
    }


def _manifest(tests: dict[str, tuple[list[str], str | None]]) -> dict[str, Any]:
    """`tests`: {test uid: (the nodes it refs, its attached node or None for a singular test)}."""
    nodes = {uid: _node(uid, parents) for uid, parents in NODES.items() if not uid.startswith("source.")}
    for uid, (refs, attached) in tests.items():
        nodes[uid] = _node(uid, refs, attached_node=attached)
    sources = {uid: _node(uid, []) for uid in NODES if uid.startswith("source.")}
    return {"nodes": nodes, "sources": sources}


TESTS = {
    "test.p.unique_stg_id.1": (["model.p.stg"], "model.p.stg"),
    "test.p.accepted_values_sensors_kind.2": (["model.p.sensors"], "model.p.sensors"),
    "test.p.assert_scorecard_matches_sensors": (["model.p.scorecard", "model.p.sensors"], None),  # singular
    "unit_test.p.requests.counts_by_district": (["model.p.requests"], "model.p.requests"),
}


def _run(statuses: dict[str, str]) -> dict[str, Any]:
    """run_results.json: every node succeeded or passed unless `statuses` says otherwise."""
    results = []
    for uid in [*NODES, *TESTS]:
        if uid.startswith("source."):
            continue
        default = "success" if uid.startswith("model.") else "pass"
        status = statuses.get(uid, default)
        message = "Binder Error: Referenced column x not found" if status == "error" else None
        failures = 3 if status in ("fail", "warn") else 0
        results.append({"unique_id": uid, "status": status, "message": message, "failures": failures})
    return {"results": results}


def _gate(
    statuses: dict[str, str], findings: tuple[PiiFinding, ...] = ()
) -> dict[str, tuple[str, list[str]]]:
    gates = gate_products(_manifest(TESTS), _run(statuses), SPECS, findings, target="/home/dbt_target")
    return {name.removeprefix("dept."): (g.status, [c.name for c in g.failed]) for name, g in gates.items()}


def test_a_clean_build_passes_every_product_and_lists_the_checks_that_ran() -> None:
    assert _gate({}) == {"requests": ("passed", []), "scorecard": ("passed", []), "sensors": ("passed", [])}
    gates = gate_products(_manifest(TESTS), _run({}), SPECS)
    assert {c["name"] for c in gates["dept.scorecard"].checks} == {
        "unique_stg_id",
        "counts_by_district",
        "assert_scorecard_matches_sensors",
    }


def test_a_failed_test_upstream_holds_back_only_the_products_built_from_it() -> None:
    # dbt skips what is downstream of a failing error-severity test
    outcome = _gate(
        {"test.p.unique_stg_id.1": "fail", "model.p.requests": "skipped", "model.p.scorecard": "skipped"}
    )
    assert outcome == {
        "requests": ("failed", ["unique_stg_id"]),
        "scorecard": ("failed", ["unique_stg_id"]),
        "sensors": ("passed", []),
    }


def test_a_warn_test_publishes_and_records_the_warning() -> None:
    gates = gate_products(_manifest(TESTS), _run({"test.p.accepted_values_sensors_kind.2": "warn"}), SPECS)
    assert (gates["dept.sensors"].status, gates["dept.sensors"].held_back) == ("warned", False)
    (check,) = gates["dept.sensors"].failed
    assert check.severity == "warn" and "3 failing rows" in check.message
    assert gates["dept.requests"].status == "passed"


def test_a_singular_test_holds_back_every_product_it_refs() -> None:
    outcome = _gate({"test.p.assert_scorecard_matches_sensors": "fail"})
    assert outcome["scorecard"] == ("failed", ["assert_scorecard_matches_sensors"])
    assert outcome["sensors"] == ("failed", ["assert_scorecard_matches_sensors"])
    assert outcome["requests"] == ("passed", [])


def test_a_failing_unit_test_holds_back_its_model_and_what_is_built_from_it() -> None:
    outcome = _gate({"unit_test.p.requests.counts_by_district": "fail", "model.p.requests": "skipped"})
    assert outcome["requests"][0] == outcome["scorecard"][0] == "failed"
    assert outcome["sensors"] == ("passed", [])


def test_a_model_error_names_the_model_and_compiled_sql_and_keeps_the_database_message_apart() -> None:
    run = _run({"model.p.stg": "error", "model.p.requests": "skipped"})
    gates = gate_products(_manifest(TESTS), run, SPECS, target="/home/dbt_target")
    (check,) = [c for c in gates["dept.requests"].failed if c.name == "stg"]
    compiled = "/home/dbt_target/compiled/p/models/stg.sql"
    assert check.message == f"dbt model stg failed to build (Binder Error; compiled SQL: {compiled})"
    assert "Referenced column x" in check.detail and "Referenced column x" not in check.message
    assert gates["dept.sensors"].status == "passed"


def test_a_pii_finding_holds_back_the_product_and_the_products_built_from_it() -> None:
    leak = PiiFinding("dept.requests", "id", "undeclared_pii", ("requests.id", "raw.requests.email [pii]"))
    deidentified = PiiFinding(
        "sensors", "id", "deidentified", ("sensors.id", "raw.sensors.x [pii]"), "k-anon"
    )
    outcome = _gate({}, (leak, deidentified))
    assert outcome == {
        "requests": ("failed", ["pii_gate.id"]),
        "scorecard": ("failed", ["upstream dept.requests"]),
        "sensors": ("passed", []),
    }


def test_a_model_dbt_did_not_run_is_held_back() -> None:
    run = _run({})
    run["results"] = [r for r in run["results"] if r["unique_id"] != "model.p.sensors"]
    assert _gate_run(run)["sensors"] == ("failed", ["model sensors"])


def _gate_run(run: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    gates = gate_products(_manifest(TESTS), run, SPECS)
    return {name.removeprefix("dept."): (g.status, [c.name for c in g.failed]) for name, g in gates.items()}


def test_a_model_that_did_not_build_is_held_back_for_that_reason_not_for_pii() -> None:
    # dbt compiles only what it runs: a skipped model has no SQL to classify in this build.
    unknown = PiiFinding("dept.requests", "id", "unknown_lineage", ("requests.id",), "not described")
    outcome = _gate({"test.p.unique_stg_id.1": "fail", "model.p.requests": "skipped"}, (unknown,))
    assert outcome["requests"] == ("failed", ["unique_stg_id"])


def _boundary_node(uid: str, parents: list[str], department: str, **product: Any) -> dict[str, Any]:
    """A node in `models/<department>/`; `product`: classification and pii to make it a product."""
    node = _node(uid, parents, original_file_path=f"models/{department}/x.sql")
    if uid.startswith("model."):
        node["group"] = department
    if product:
        node["access"] = "public"
        node["config"] = {"meta": {"civicmesh": {"classification": product["classification"]}}}
        node["columns"] = {"c": {"name": "c", "tags": ["pii"] if product.get("pii") else []}}
    return node


# hr's models reading public works' data: only an open product (public, no personal data) is allowed
BOUNDARY = {
    "source.p.raw_pw.requests": ([], "public_works", {}),
    "source.p.raw_hr.staff": ([], "hr", {}),
    "model.p.stg_pw": (["source.p.raw_pw.requests"], "public_works", {}),
    "model.p.pw_open": (["model.p.stg_pw"], "public_works", {"classification": "public"}),
    "model.p.pw_internal": (["model.p.stg_pw"], "public_works", {"classification": "internal"}),
    "model.p.pw_public_pii": (["model.p.stg_pw"], "public_works", {"classification": "public", "pii": True}),
    "model.p.stg_hr_copy": (["source.p.raw_pw.requests"], "hr", {}),
}
FOREIGN = [
    (["source.p.raw_hr.staff"], []),
    (["model.p.pw_open"], []),
    (["source.p.raw_pw.requests"], ["source.p.raw_pw.requests"]),
    (["model.p.stg_pw"], ["model.p.stg_pw"]),
    (["model.p.pw_internal"], ["model.p.pw_internal"]),
    (["model.p.pw_public_pii"], ["model.p.pw_public_pii"]),
    (["model.p.stg_hr_copy"], ["source.p.raw_pw.requests"]),  # through hr's own staging model
    (["model.p.pw_open", "source.p.raw_hr.staff", "model.p.pw_internal"], ["model.p.pw_internal"]),
]


@pytest.mark.parametrize(("reads", "foreign"), FOREIGN)
def test_a_product_builds_on_another_department_only_through_its_open_products(
    reads: list[str], foreign: list[str]
) -> None:
    nodes = {
        uid: _boundary_node(uid, parents, dept, **product)
        for uid, (parents, dept, product) in BOUNDARY.items()
    }
    nodes["model.p.hr_product"] = _boundary_node("model.p.hr_product", reads, "hr", classification="internal")
    manifest = {
        "nodes": {u: n for u, n in nodes.items() if not u.startswith("source.")},
        "sources": {u: n for u, n in nodes.items() if u.startswith("source.")},
    }
    assert foreign_inputs(manifest, "model.p.hr_product", "hr") == foreign
    spec = ProductSpec(
        "hr", "hr_product", "internal", "o@city.example", "", (), model_unique_id="model.p.hr_product"
    )
    run = {"results": [{"unique_id": "model.p.hr_product", "status": "success"}]}
    gate = gate_products(manifest, run, [spec])["hr.hr_product"]
    assert [c.name for c in gate.failed] == [f"boundary.{uid}" for uid in foreign]
    assert gate.held_back is bool(foreign)


# a product of hr built from hr's products: never classified below what it reads without a reason
CLASSES = {"model.p.register": "restricted", "model.p.directory": "internal", "model.p.open": "public"}
DOWNGRADES = [
    ("restricted", ["model.p.register"], None, []),
    ("confidential", ["model.p.register"], None, ["model.p.register"]),
    ("internal", ["model.p.register", "model.p.directory"], None, ["model.p.register"]),
    ("public", ["model.p.directory", "model.p.open"], None, ["model.p.directory"]),
    ("public", ["model.p.open"], None, []),
    ("internal", ["model.p.stg_register"], None, ["model.p.register"]),  # through a model, not around it
    ("internal", ["model.p.register"], "headcounts per department", []),
]


@pytest.mark.parametrize(("classification", "reads", "declassified", "stricter"), DOWNGRADES)
def test_a_product_is_not_classified_below_what_it_is_built_from(
    classification: str, reads: list[str], declassified: str | None, stricter: list[str]
) -> None:
    nodes = {uid: _boundary_node(uid, [], "hr", classification=c) for uid, c in CLASSES.items()}
    nodes["model.p.stg_register"] = _boundary_node("model.p.stg_register", ["model.p.register"], "hr")
    nodes["model.p.new"] = _boundary_node("model.p.new", reads, "hr", classification=classification)
    manifest = {"nodes": nodes, "sources": {}}
    spec = ProductSpec(
        "hr",
        "new",
        classification,
        "o@city.example",
        "",
        (),
        model_unique_id="model.p.new",
        declassified=declassified,
    )
    assert stricter_inputs(manifest, spec) == stricter
    run = {"results": [{"unique_id": "model.p.new", "status": "success"}]}
    gate = gate_products(manifest, run, [spec])["hr.new"]
    assert [c.name for c in gate.failed] == [f"classification.{uid}" for uid in stricter]


def test_a_declared_key_that_is_not_unique_holds_back_the_product_and_what_is_built_from_it() -> None:
    """The gateway pages and resumes cursors by the key: repeated values would skip rows."""
    specs = [dataclasses.replace(s, key="id") for s in SPECS]
    repeated = {"dept.requests": 2, "dept.sensors": 0}
    gates = gate_products(_manifest(TESTS), _run({}), specs, repeated_keys=repeated)
    outcome = {n.removeprefix("dept."): (g.status, [c.name for c in g.failed]) for n, g in gates.items()}
    assert outcome == {
        "requests": ("failed", ["key.id"]),
        "scorecard": ("failed", ["upstream dept.requests"]),
        "sensors": ("passed", []),
    }
    (check,) = gates["dept.requests"].failed
    assert check.message.startswith("key 'id' is not unique: 2 of its values stand on more than one row")


def test_a_model_that_did_not_build_is_not_judged_on_its_stale_key() -> None:
    specs = [dataclasses.replace(s, key="id") for s in SPECS]
    run = _run({"model.p.requests": "error", "model.p.scorecard": "skipped"})
    gates = gate_products(_manifest(TESTS), run, specs, repeated_keys={"dept.requests": 5})
    assert "key.id" not in {c.name for c in gates["dept.requests"].failed}
    assert gates["dept.requests"].status == "failed"
