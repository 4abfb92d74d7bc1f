"""PII declared at the source follows column lineage: undeclared derivatives block, with the path."""

from __future__ import annotations

from typing import Any

import ol_dbt_artifacts as artifacts

from lineage.classification import pii_findings
from lineage.dbt import NodeColumns
from meshcore.products import load_product_specs

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


STG = "model.civicmesh.stg_service_requests"
RAW_EMAIL = "raw.public_works_service_requests.reporter_email [pii]"


def _masked_manifest() -> dict[str, Any]:
    """The fixture project with its one leak masked: no finding until a test adds one."""
    manifest = artifacts.manifest()
    _set_meta(manifest, "reporter_key", mask="hash")
    assert _findings(manifest) == []
    return manifest


def _add_product(
    manifest: dict[str, Any], name: str, sql: str, depends: list[str], columns: list[str]
) -> None:
    uid, node = artifacts._model(
        name,
        "main",
        sql,
        depends,
        [artifacts._column(c, "varchar") for c in columns],
        access="public",
        meta={"civicmesh": {"classification": "public"}},
    )
    manifest["nodes"][uid] = node


def _source(manifest: dict[str, Any], name: str, schema: str, identifier: str, columns: list[str]) -> str:
    uid = f"source.civicmesh.{name}.{identifier}"
    manifest["sources"][uid] = {
        **manifest["sources"][SOURCE],
        "unique_id": uid,
        "source_name": name,
        "name": identifier,
        "schema": schema,
        "identifier": identifier,
        "relation_name": f'"warehouse"."{schema}"."{identifier}"',
        "original_file_path": f"models/_{name}.yml",
        "columns": {c: artifacts._column(c, "varchar") for c in columns},  # declared plain
    }
    return uid


def test_a_second_source_of_the_same_table_cannot_declare_its_pii_plain() -> None:
    manifest = _masked_manifest()
    again = _source(
        manifest, "raw_again", "raw", "public_works_service_requests", ["request_id", "reporter_email"]
    )
    sql = (
        'select request_id, reporter_email as contact from "warehouse"."raw"."public_works_service_requests"'
    )
    _add_product(manifest, "contacts", sql, [again], ["request_id", "contact"])
    (finding,) = _findings(manifest)
    assert finding.kind == "undeclared_pii" and finding.path == (
        "public_works.contacts.contact",
        "raw_again.public_works_service_requests.reporter_email"
        " [pii, declared in raw.public_works_service_requests]",
    )


def test_a_source_naming_a_relation_dbt_builds_is_followed_into_that_model() -> None:
    manifest = _masked_manifest()
    staged = _source(manifest, "models", "main", "stg_service_requests", ["request_id", "reporter_email"])
    sql = 'select request_id, reporter_email as contact from "warehouse"."main"."stg_service_requests"'
    _add_product(manifest, "contacts", sql, [staged], ["request_id", "contact"])
    (finding,) = _findings(manifest)
    assert finding.path == (
        "public_works.contacts.contact",
        "models.stg_service_requests.reporter_email",
        "main.stg_service_requests.reporter_email",
        RAW_EMAIL,
    )


def test_a_snapshot_is_followed_through_its_sql_and_its_dbt_columns_through_its_key() -> None:
    manifest = _masked_manifest()
    uid = "snapshot.civicmesh.requests_history"
    manifest["nodes"][uid] = {
        **manifest["nodes"][STG],
        "unique_id": uid,
        "resource_type": "snapshot",
        "name": "requests_history",
        "alias": "requests_history",
        "relation_name": '"warehouse"."main"."requests_history"',
        "compiled_code": 'select * from "warehouse"."main"."stg_service_requests"',
        "depends_on": {"nodes": [STG], "macros": []},
        "config": {"unique_key": "reporter_email", "strategy": "check", "materialized": "snapshot"},
        "columns": {"reporter_email": artifacts._column("reporter_email", "varchar")},  # listed, plain
    }
    sql = (
        "select request_id, reporter_email as contact, dbt_scd_id as version_key, "
        'cast(dbt_valid_from as varchar) as valid_from from "warehouse"."main"."requests_history"'
    )
    _add_product(manifest, "history", sql, [uid], ["request_id", "contact", "version_key", "valid_from"])
    found = {f.column: f.path for f in _findings(manifest)}
    assert set(found) == {"contact", "version_key"}  # the key is the e-mail, an input of dbt_scd_id
    assert found["contact"] == (
        "public_works.history.contact",
        "main.requests_history.reporter_email",
        "main.stg_service_requests.reporter_email",
        RAW_EMAIL,
    )
    assert found["version_key"][1:3] == (
        "main.requests_history.dbt_scd_id",
        "main.requests_history.reporter_email",
    )


def test_a_model_with_hooks_has_unknown_lineage() -> None:
    """A post-hook runs `update {{ this }} set ...` after the SELECT the lineage was read from."""
    manifest = _masked_manifest()
    sql = 'select request_id, \'n/a\' as note from "warehouse"."main"."stg_service_requests"'
    _add_product(manifest, "notes", sql, [STG], ["request_id", "note"])
    node = manifest["nodes"]["model.civicmesh.notes"]
    node["config"]["post-hook"] = [{"sql": "update notes set note = 'x'", "transaction": True, "index": None}]
    findings = {f.column: f for f in _findings(manifest)}
    assert set(findings) == {"request_id", "note"} and findings["note"].kind == "unknown_lineage"
    assert "hook" in findings["note"].reason


def test_a_model_reading_its_own_table_back_is_unknown() -> None:
    """Build 1 published `contact` masked (the table holds raw e-mails, masks apply on read); build 2
    reads the column back through a source naming the model's own table and declares it plain."""
    manifest = _masked_manifest()
    warehouse = dict(artifacts.warehouse(manifest))  # before the model that cannot be a view of itself
    itself = _source(manifest, "mine", "main", "contacts", ["contact"])
    sql = 'select contact from "warehouse"."main"."contacts"'
    _add_product(manifest, "contacts", sql, [itself], ["contact"])
    warehouse["model.civicmesh.contacts"] = warehouse[itself] = (("contact", "VARCHAR"),)
    specs = [s for s in load_product_specs(manifest) if s.product == "contacts"]
    (finding,) = pii_findings(manifest, specs, NodeColumns(manifest, warehouse))
    assert finding.kind == "unknown_lineage" and "read back from its own table" in finding.reason
    assert finding.path == (
        "public_works.contacts.contact",
        "mine.contacts.contact",
        "public_works.contacts.contact",
    )
