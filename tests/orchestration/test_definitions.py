"""The code location loads, and its groups and owners come from dbt, not from a hand-kept list."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.assemble import build_definitions
from orchestration.publish import publish_key
from tests.mesh import isolated_settings


@pytest.fixture(scope="module")
def loaded(dbt_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dg.Definitions, dict]:
    """Definitions as `dagster dev` loads them (it parses the dbt project itself), and the manifest."""
    home = tmp_path_factory.mktemp("defs")
    return build_definitions(isolated_settings(home)), json.loads(dbt_manifest.read_text())


def test_definitions_load_like_dagster_dev_would(loaded: tuple[dg.Definitions, dict]) -> None:
    defs, _ = loaded
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "published/public_works/service_requests" in keys
    assert "raw_public_works/service_requests" in keys
    assert "public_works/service_requests" in keys
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"build_all_products", "check_freshness"}


def test_groups_and_owners_follow_the_dbt_groups(loaded: tuple[dg.Definitions, dict]) -> None:
    defs, manifest = loaded
    owners = {g["name"]: g["owner"]["email"] for g in manifest["groups"].values()}
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        department = node.group_name
        assert department in owners, f"{key.to_user_string()} is in group {department!r}"
        assert list(node.owners) == [owners[department]], key.to_user_string()


def test_every_product_publish_follows_its_model_and_dbt_checks_never_block_the_dbt_step(
    loaded: tuple[dg.Definitions, dict],
) -> None:
    # A blocking check failing in the one dbt step would fail the step and hold back every product;
    # the publish gate (orchestration.gate) decides per product instead.
    defs, _ = loaded
    graph = defs.resolve_asset_graph()
    model = dg.AssetKey(["public_works", "service_requests"])
    assert model in graph.get(publish_key_of("public_works", "service_requests")).parent_keys
    checks = graph.get_check_keys_for_assets({model})
    assert any("unique" in c.name for c in checks), checks
    all_checks = graph.get_check_keys_for_assets(graph.get_all_asset_keys())
    assert all_checks and not [c for c in all_checks if graph.get_check_spec(c).blocking]


def publish_key_of(department: str, product: str) -> dg.AssetKey:
    return dg.AssetKey(["published", department, product])


def test_publish_key_shape() -> None:
    from meshcore.products import ColumnSpec, ProductSpec

    spec = ProductSpec("hr", "employees", "restricted", "frank@city.example", "", (ColumnSpec("a", "int"),))
    assert publish_key(spec) == publish_key_of("hr", "employees")
