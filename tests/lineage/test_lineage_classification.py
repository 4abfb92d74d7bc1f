"""PII declared at the source follows column lineage: undeclared derivatives block, with the path."""

from __future__ import annotations

from typing import Any

import ol_dbt_artifacts as artifacts

from civicmesh.products import load_product_specs
from lineage.classification import pii_findings
from lineage.dbt import NodeColumns

MART = "model.civicmesh.service_requests"
SOURCE = "source.civicmesh.raw.public_works_service_requests"


def _findings(manifest: dict[str, Any]) -> list:
    columns = NodeColumns(manifest, artifacts.warehouse(manifest))
    return pii_findings(manifest, load_product_specs(manifest), columns)


def _set_meta(manifest: dict[str, Any], column: str, **meta: Any) -> None:
    spec = manifest["nodes"][MART]["columns"][column]
    spec["meta"].update(meta)
    spec["config"]["meta"].update(meta)
    if "mask" in meta:
        spec["tags"] = ["pii"]


def test_pii_declared_at_the_source_reaches_the_product_through_staging() -> None:
    (finding,) = _findings(artifacts.manifest())
    assert finding.blocking and finding.kind == "undeclared_pii"
    assert (finding.product, finding.column) == ("public_works.service_requests", "reporter_key")
    assert finding.path == (
        "public_works.service_requests.reporter_key",
        "main.stg_service_requests.reporter_email",
        "raw.public_works_service_requests.reporter_email [pii]",
    )
    assert "public_works.service_requests.reporter_key is derived from PII" in finding.message


def test_a_declared_mask_or_a_deidentification_reason_clears_it() -> None:
    manifest = artifacts.manifest()
    _set_meta(manifest, "reporter_key", mask="hash")
    assert _findings(manifest) == []
    manifest = artifacts.manifest()
    _set_meta(
        manifest, "reporter_key", deidentified="salted hash rotated daily; no re-identification key kept"
    )
    (finding,) = _findings(manifest)
    assert not finding.blocking and "rotated daily" in finding.message


def test_a_source_column_nobody_declared_is_unknown_and_blocks() -> None:
    manifest = artifacts.manifest()
    columns = NodeColumns(manifest, artifacts.warehouse(manifest))
    del manifest["sources"][SOURCE]["columns"]["district"]  # in the warehouse, not in the yml
    findings = pii_findings(manifest, load_product_specs(manifest), columns)
    (finding,) = [f for f in findings if f.column == "district"]
    assert finding.kind == "unknown_lineage" and finding.blocking
    assert finding.path[-1] == "raw.public_works_service_requests.district"
    assert "models/public_works/_sources.yml" in finding.message


def test_without_the_warehouse_columns_every_column_is_unknown() -> None:
    manifest = artifacts.manifest()
    findings = pii_findings(manifest, load_product_specs(manifest), NodeColumns(manifest))
    assert {f.kind for f in findings} == {"unknown_lineage"}
    assert {f.column for f in findings} == set(manifest["nodes"][MART]["columns"])


def test_pii_follows_across_products() -> None:
    manifest = artifacts.manifest()
    _set_meta(manifest, "reporter_key", mask="hash")
    # a second department's product that passes the key on under another name
    uid, node = artifacts._model(
        "repeat_reporters",
        "main",
        'select reporter_key as who, count(*) as n from "warehouse"."main"."service_requests" group by 1',
        [MART],
        [artifacts._column("who", "varchar"), artifacts._column("n", "bigint")],
        access="public",
        meta={"civicmesh": {"classification": "internal"}},
    )
    manifest["nodes"][uid] = node
    findings = [f for f in _findings(manifest) if f.blocking]
    assert [(f.product, f.column) for f in findings] == [("public_works.repeat_reporters", "who")]
    assert findings[0].path == (
        "public_works.repeat_reporters.who",
        "public_works.service_requests.reporter_key [pii]",
    )


def test_an_ephemeral_model_is_followed_inside_the_sql_that_inlines_it() -> None:
    manifest = artifacts.manifest()
    stg = manifest["nodes"]["model.civicmesh.stg_service_requests"]
    stg["config"]["materialized"] = "ephemeral"
    mart = manifest["nodes"][MART]
    inlined = f"with __dbt__cte__stg_service_requests as (\n{stg['compiled_code']}\n), "
    mart["compiled_code"] = inlined + mart["compiled_code"].removeprefix("with ").replace(
        '"warehouse"."main"."stg_service_requests"', "__dbt__cte__stg_service_requests"
    )
    (finding,) = _findings(manifest)
    assert finding.path == (
        "public_works.service_requests.reporter_key",
        "raw.public_works_service_requests.reporter_email [pii]",
    )
