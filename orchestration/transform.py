"""dbt models as Dagster assets, one `dbt build` per run, then the publish gate.

dbt tests become asset checks (shown in Dagster) that never block by themselves: a failed check in
the one dbt step would otherwise stop every product's publish. The gate (`orchestration.gate`)
decides per product from dbt's run results and the PII gate, and each publish step obeys it.
"""

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets

from lineage.classification import pii_findings
from lineage.dbt import NodeColumns, events_from_dbt_run, fill_compiled_code, relation_name, warehouse_columns
from lineage.events import new_run_id
from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog
from meshcore.products import ProductSpec, is_product_node, load_product_specs
from meshcore.settings import Settings
from meshcore.snapshots import repeated_values
from meshcore.store import utcnow
from orchestration.gate import GateResult, gate_products
from orchestration.lineage_hooks import dagster_parent, record
from orchestration.quarantine import quarantine_leaks
from orchestration.resources import MeshResource

log = logging.getLogger(__name__)


class MeshTranslator(DagsterDbtTranslator):
    """Groups and owners come from dbt groups (the default); adds kinds and product tags."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # dagster-dbt keys a versioned model by its alias alone; keep the department prefix.
        if (
            dbt_resource_props.get("resource_type") == "model"
            and dbt_resource_props.get("version") is not None
        ):
            return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["alias"]])
        return super().get_asset_key(dbt_resource_props)

    def get_kinds(self, dbt_resource_props: Mapping[str, Any]) -> set[str]:
        return {"dbt", "duckdb"}

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if is_product_node(dbt_resource_props):
            meta = (dbt_resource_props.get("config") or {}).get("meta", {}).get("civicmesh", {})
            tags["civicmesh/product"] = ""
            tags["civicmesh/classification"] = str(meta.get("classification", "unknown"))
        return tags

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        # Blocking checks fail the whole dbt step, holding back every product: the gate decides.
        return spec._replace(blocking=False) if spec is not None else None


def read_build(project: DbtProject, invocation: DbtCliInvocation) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest (with compiled SQL) and run_results this `dbt build` wrote; empty results when
    dbt stopped before writing them (then every product is held back as not run)."""
    manifest = fill_compiled_code(json.loads(project.manifest_path.read_text()), project.target_path)
    try:
        run_results = invocation.get_artifact("run_results.json")
    except FileNotFoundError:
        run_results = {}
    return manifest, dict(run_results)


def selected_specs(
    context: dg.AssetExecutionContext, translator: DagsterDbtTranslator, manifest: Mapping[str, Any]
) -> list[ProductSpec]:
    """The products whose model this run built; the others keep their last quality record."""
    return [
        s
        for s in load_product_specs(manifest)
        if translator.get_asset_key(manifest["nodes"][s.model_unique_id]) in context.selected_asset_keys
    ]


def classify_columns(settings: Settings, manifest: Mapping[str, Any]) -> NodeColumns:
    """Column lineage checked against what DuckDB says every node returns (read-only, after dbt)."""
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return NodeColumns(manifest, warehouse_columns(con, manifest))


def repeated_keys(
    settings: Settings, manifest: Mapping[str, Any], specs: list[ProductSpec]
) -> dict[str, int | None]:
    """{product: values of its declared key on more than one row of its mart} (read-only, after
    dbt), for products that declare a key; None when the mart could not be read (DuckDB
    raised: out of memory, a view over a file gone): the gate then holds the product back
    if its model built (fail closed), and the error is logged, not shown (it can quote data)."""
    counts: dict[str, int | None] = {}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for spec in specs:
            if not spec.key:
                continue
            relation = relation_name(manifest["nodes"][spec.model_unique_id])
            counts[spec.name] = None
            try:
                counts[spec.name] = repeated_values(con, relation, spec.key)
            except duckdb.Error:
                log.warning("key check of %s could not read %s", spec.name, relation, exc_info=True)
    return counts


def gate(
    manifest: Mapping[str, Any],
    run_results: Mapping[str, Any],
    specs: list[ProductSpec],
    columns: NodeColumns,
    target: str,
    repeated: Mapping[str, int | None],
) -> dict[str, GateResult]:
    """dbt's results, the PII gate and key uniqueness, one decision per product (`orchestration.gate`)."""
    names = {s.model_unique_id: s.name for s in load_product_specs(manifest)}
    findings = pii_findings(manifest, specs, columns, products=names)
    return gate_products(manifest, run_results, specs, findings, target, repeated)


def record_gates(
    context: dg.AssetExecutionContext,
    catalog: Catalog,
    specs: list[ProductSpec],
    gates: Mapping[str, GateResult],
) -> None:
    """One quality record per product, read by its publish step in this same run."""
    checked_at = utcnow()
    for spec in specs:
        result = gates[spec.name]
        for check in result.failed:
            log = context.log.error if check.severity == "error" else context.log.warning
            log(f"{spec.name}: {check.message}" + (f"\n{check.detail}" if check.detail else ""))
        catalog.record_quality(spec, result.status, result.quality(context.run_id, checked_at))


def record_dbt_lineage(
    context: dg.AssetExecutionContext,
    settings: Settings,
    project: DbtProject,
    build: tuple[Mapping[str, Any], Mapping[str, Any]],
    columns: NodeColumns,
) -> None:
    manifest, run_results = build
    events = events_from_dbt_run(
        manifest,
        run_results,
        run_id=new_run_id(),
        parent=dagster_parent(context),
        warehouse_path=settings.warehouse_path,
        project_dir=project.project_dir,
        columns=columns,
    )
    record(settings, events)


def dbt_transform_assets(project: DbtProject, translator: DagsterDbtTranslator) -> dg.AssetsDefinition:
    @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=translator)
    def civicmesh_dbt(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, mesh: MeshResource
    ) -> Iterator[Any]:
        # The project's own target folder: dbt's partial parse reuses it (a fresh per-run folder
        # re-parses everything, ~8 s), and runs never overlap (one DuckDB writer). A failed model
        # or test does not fail this step: the gate holds back only the products built from it.
        settings, catalog = mesh.settings, mesh.catalog()
        invocation = dbt.cli(
            ["build"], context=context, target_path=project.target_path, raise_on_error=False
        )
        yield from invocation.stream()
        manifest, run_results = read_build(project, invocation)
        specs = selected_specs(context, translator, manifest)
        columns = classify_columns(settings, manifest)
        repeated = repeated_keys(settings, manifest, specs)
        gates = gate(manifest, run_results, specs, columns, str(project.target_path), repeated)
        gates = quarantine_leaks(catalog, AccessLog.from_settings(settings), gates, context.run_id)
        record_gates(context, catalog, specs, gates)
        record_dbt_lineage(context, settings, project, (manifest, run_results), columns)

    return civicmesh_dbt
