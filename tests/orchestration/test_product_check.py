"""Where `product check` points: a spec field's line in a dbt yml, and every spec problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from civicmesh.products import PLACEHOLDER, collect_spec, spec_from_node
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


def test_unscoped_needs_a_reason_and_excludes_a_scope_column() -> None:
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
    base["config"]["meta"]["civicmesh"].update(unscoped="why", scope_column="request_id")
    assert "either declares a scope_column or is unscoped" in str(collect_spec(base, GROUPS)[1][0])
