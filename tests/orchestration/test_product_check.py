"""Where `product check` points: a spec field's line in a dbt yml, and every spec problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcore.products import PLACEHOLDER, ProductSpec, collect_spec, duplicate_names, spec_from_node
from orchestration.gate import gate_products
from orchestration.yml_lines import field_line

YML = """models:
  - name: other
    columns:
      - name: district
  - name: backlog
    description: "x"
    config:
      meta:
        civicmesh:
          classification: internal
          key: request_id
    columns:
      - name: request_id
        data_type: varchar
      - name: contact
        config:
          tags: [pii]
          meta: {mask: hash}
"""


@pytest.mark.parametrize(
    ("field", "line"),
    [
        ("models.backlog", 5),
        ("models.backlog.description", 6),
        ("models.backlog.config.meta.civicmesh.classification", 10),
        ("models.backlog.config.meta.civicmesh.key", 11),
        ("models.backlog.config.meta.civicmesh.scope_column", 9),  # absent: where it goes
        ("models.backlog.columns.request_id.data_type", 14),
        ("models.backlog.columns.contact.data_type", 15),  # absent: the column
        ("models.backlog.columns.contact.meta.mask", 18),  # under the column's `config:`
        ("models.other.columns.district", 4),
        ("models.missing.columns.x", 1),
    ],
)
def test_field_line(tmp_path: Path, field: str, line: int) -> None:
    path = tmp_path / "x.yml"
    path.write_text(YML)
    assert field_line(path, field) == line


def test_field_line_of_a_broken_or_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("models: [\n")
    assert field_line(broken, "models.x") is None
    assert field_line(tmp_path / "absent.yml", "models.x") is None


def node(**meta: object) -> dict:
    columns = {
        "request_id": {"name": "request_id", "data_type": "varchar"},
        "contact": {"name": "contact", "tags": ["pii"], "meta": {"mask": "scramble"}},
    }
    return {
        "unique_id": "model.civicmesh.backlog",
        "name": "backlog",
        "package_name": "civicmesh",
        "resource_type": "model",
        "access": "public",
        "group": "public_works",
        "patch_path": "civicmesh://models/public_works/marts/backlog.yml",
        "description": f"{PLACEHOLDER} describe me",
        "config": {
            "meta": {"civicmesh": {"classification": "secret", **meta}},
            "contract": {"enforced": False},
        },
        "columns": columns,
    }


GROUPS = {"group.civicmesh.public_works": {"owner": {"email": "alice@city.example"}}}


def test_the_spec_loader_collects_every_problem_and_the_build_raises_the_first() -> None:
    spec, problems = collect_spec(node(scope_column="ward", freshness_sla_hours=-1), GROUPS)
    fields = [p.field for p in problems]
    assert fields == [
        "models.backlog.config.contract.enforced",
        "models.backlog.columns.contact.data_type",
        "models.backlog.columns.contact.meta.mask",
        "models.backlog.config.meta.civicmesh.classification",
        "models.backlog.config.meta.civicmesh.scope_column",
        "models.backlog.config.meta.civicmesh.freshness_sla_hours",
        "models.backlog.description",
    ]
    assert {p.source for p in problems} == {"models/public_works/marts/backlog.yml"}
    assert spec.name == "public_works.backlog"  # what the yml says, for the other checks
    with pytest.raises(ValueError, match=r"contract\.enforced: products need an enforced contract"):
        spec_from_node(node(), GROUPS)


def test_unscoped_needs_a_reason() -> None:
    base = node()
    base["config"]["contract"]["enforced"] = True
    base["description"] = "described"
    base["config"]["meta"]["civicmesh"]["classification"] = "internal"
    base["columns"]["contact"]["meta"]["mask"] = "hash"
    base["columns"]["contact"]["data_type"] = "varchar"
    ok, problems = collect_spec(base, GROUPS)
    assert not problems and ok.unscoped is None
    base["config"]["meta"]["civicmesh"]["unscoped"] = "  an aggregate  "
    ok, problems = collect_spec(base, GROUPS)
    assert not problems and ok.unscoped == "an aggregate"
    assert "unscoped" in ok.to_json()
    base["config"]["meta"]["civicmesh"]["unscoped"] = ""
    assert [p.field for p in collect_spec(base, GROUPS)[1]] == [
        "models.backlog.config.meta.civicmesh.unscoped"
    ]
    base["config"]["meta"]["civicmesh"]["declassified"] = " "
    assert [p.field for p in collect_spec(base, GROUPS)[1]] == [
        "models.backlog.config.meta.civicmesh.unscoped",
        "models.backlog.config.meta.civicmesh.declassified",
    ]
    del base["config"]["meta"]["civicmesh"]["declassified"]
    assert "declassified" not in ok.to_json()  # unset: specs published before it keep their identity
    # beside a scope column: why the product's other scope columns limit no reader
    base["config"]["meta"]["civicmesh"].update(unscoped="why", scope_column="request_id")
    ok, problems = collect_spec(base, GROUPS)
    assert not problems and (ok.scope_column, ok.unscoped) == ("request_id", "why")


# dbt 1.11's message when a table drifts from its enforced contract (dbt-duckdb, abridged stack)
CONTRACT_MESSAGE = """Compilation Error in model drift (models/p/drift.sql)
  This model has an enforced contract that failed.
  Please ensure the name, data_type, and number of columns in your contract match the columns in \
your model's definition.

  | column_name | definition_type | contract_type | mismatch_reason    |
  | ----------- | --------------- | ------------- | ------------------ |
  | district    | INTEGER         | VARCHAR       | data type mismatch |

  > in macro assert_columns_equivalent (macros/relations/column/columns_spec_ddl.sql)
  > called by model drift (models/p/drift.sql)"""


def test_a_contract_failure_is_named_so_with_its_column_table_and_no_macro_stack() -> None:
    drift = ProductSpec("p", "drift", "public", "p@city.example", "d", (), model_unique_id="model.p.drift")
    node = {
        "unique_id": "model.p.drift",
        "name": "drift",
        "compiled_path": "target/compiled/p/models/drift.sql",
    }
    run = {"results": [{"unique_id": "model.p.drift", "status": "error", "message": CONTRACT_MESSAGE}]}
    gate = gate_products({"nodes": {"model.p.drift": node}}, run, [drift], target="/home/t")["p.drift"]
    (check,) = gate.failed
    compiled = "/home/t/compiled/p/models/drift.sql"
    assert check.message == f"dbt model drift failed to build (Contract Error; compiled SQL: {compiled})"
    assert "| district    | INTEGER         | VARCHAR       | data type mismatch |" in check.detail
    assert "> in macro" not in check.detail and "> called by" not in check.detail


def test_column_tags_are_sorted_so_a_spec_is_the_same_whatever_order_dbt_gives() -> None:
    from meshcore.products import column_classification

    one = column_classification({"name": "a", "config": {"tags": ["pii", "financial"]}, "tags": ["pii"]})
    two = column_classification({"name": "a", "config": {"tags": ["financial", "pii"]}})
    assert one.tags == two.tags == ("financial", "pii")


def test_two_models_of_one_product_name_are_both_named() -> None:
    """`meta.civicmesh.product` renames a model: a second model taking an existing product's name
    would publish over it; the build refuses the project, and product check names both files."""
    first, second = node(), node()
    for n, uid, source in (
        (first, "model.civicmesh.backlog", "a.yml"),
        (second, "model.civicmesh.copy", "b.yml"),
    ):
        n["config"]["contract"]["enforced"] = True
        n["config"]["meta"]["civicmesh"]["classification"] = "internal"
        n.update(unique_id=uid, patch_path=f"civicmesh://models/public_works/marts/{source}")
    second["name"] = "copy"
    second["config"]["meta"]["civicmesh"]["product"] = "backlog"
    specs = [collect_spec(n, GROUPS)[0] for n in (first, second)]
    assert [s.name for s in specs] == ["public_works.backlog"] * 2
    problems = duplicate_names(specs)
    assert [(p.source, p.field) for p in problems] == [
        ("models/public_works/marts/a.yml", "models.backlog"),
        ("models/public_works/marts/b.yml", "models.copy"),
    ]
    assert "also declared by models/public_works/marts/b.yml" in problems[0].detail
    assert duplicate_names(specs[:1]) == []
