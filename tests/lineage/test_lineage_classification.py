"""PII follows column lineage: undeclared PII derivatives block publishing, with the column path."""

from __future__ import annotations

from typing import Any

import ol_dbt_artifacts as artifacts

from civicmesh.products import load_product_specs
from lineage.classification import pii_findings

WAREHOUSE = "/srv/civicmesh/warehouse.duckdb"
MART = "model.civicmesh.service_requests"


def _findings(manifest: dict[str, Any]) -> list:
    return pii_findings(manifest, load_product_specs(manifest), WAREHOUSE)


def _set_meta(manifest: dict[str, Any], column: str, **meta: Any) -> None:
    spec = manifest["nodes"][MART]["columns"][column]
    spec["meta"].update(meta)
    spec["config"]["meta"].update(meta)
    if "mask" in meta:
        spec["tags"] = ["pii"]


def test_an_undeclared_pii_derivative_blocks_with_the_column_path() -> None:
    (finding,) = _findings(artifacts.manifest())
    assert finding.blocking and (finding.product, finding.column) == (
        "public_works.service_requests",
        "reporter_key",
    )
    assert finding.path == (
        "public_works.service_requests.reporter_key",
        "warehouse.main.stg_service_requests.reporter_email [pii]",
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
