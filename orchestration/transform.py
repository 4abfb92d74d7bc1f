"""dbt models as Dagster assets; dbt tests become (blocking, for severity error) asset checks."""

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from civicmesh.products import ProductSpec, is_product_node, load_product_specs
from lineage.classification import pii_findings
from lineage.dbt import NodeColumns, events_from_dbt_run
from lineage.events import new_run_id
from orchestration.lineage_hooks import dagster_parent, record
from orchestration.resources import MeshResource


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

    def get_kinds(self, dbt_resource_props: Mapping[str, Any]) -> set[str]:  # type: ignore[override]
        return {"dbt", "duckdb"}

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if is_product_node(dbt_resource_props):
            meta = (dbt_resource_props.get("config") or {}).get("meta", {}).get("civicmesh", {})
            tags["civicmesh/product"] = ""
            tags["civicmesh/classification"] = str(meta.get("classification", "unknown"))
        return tags


def check_results_by_product(
    events: list[Any],
    manifest: Mapping[str, Any],
    translator: DagsterDbtTranslator,
    specs: Iterable[ProductSpec] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Group this run's dbt test outcomes by the product model they test."""
    key_to_product = {
        translator.get_asset_key(node): spec.name
        for spec in (specs if specs is not None else load_product_specs(manifest))
        for node in [manifest["nodes"][spec.model_unique_id]]
    }
    results: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if isinstance(event, dg.AssetCheckResult) and event.asset_key in key_to_product:
            results.setdefault(key_to_product[event.asset_key], []).append(
                {
                    "check": event.check_name,
                    "passed": bool(event.passed),
                    "severity": event.severity.value,
                    "failed_rows": getattr(
                        (event.metadata or {}).get("dagster_dbt/failed_row_count"), "value", None
                    ),
                }
            )
    return results


def dbt_transform_assets(project: DbtProject, translator: DagsterDbtTranslator) -> dg.AssetsDefinition:
    @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=translator)
    def civicmesh_dbt(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, mesh: MeshResource
    ) -> Iterator[Any]:
        settings = mesh.settings
        # The project's own target folder: dbt's partial parse reuses it (a fresh per-run folder
        # re-parses everything, ~8 s), and runs never overlap (one DuckDB writer).
        target = project.target_path
        invocation = dbt.cli(["build"], context=context, target_path=target, raise_on_error=False)
        events = []
        for event in invocation.stream():
            events.append(event)
            yield event
        # The manifest this dbt build wrote (with the compiled SQL), read once for everything below.
        manifest = json.loads(project.manifest_path.read_text())
        run_results = invocation.get_artifact("run_results.json")
        catalog = mesh.catalog()
        all_specs = load_product_specs(manifest)
        selected = context.selected_asset_keys
        # Products not built in this run keep their last quality status: nothing to check.
        specs = {
            s.name: s
            for s in all_specs
            if translator.get_asset_key(manifest["nodes"][s.model_unique_id]) in selected
        }
        checks_by_product = check_results_by_product(events, manifest, translator, specs.values())
        # Column lineage is parsed once and shared by the PII check and the lineage events.
        columns = NodeColumns(manifest)
        # Classification follows lineage: a column derived from PII must be declared PII (or
        # declared de-identified with a reason) before its product may publish.
        findings = pii_findings(
            manifest,
            specs.values(),
            settings.warehouse_path,
            columns,
            products={s.model_unique_id: s.name for s in all_specs},
        )
        statuses = {r["unique_id"]: r["status"] for r in run_results.get("results", [])}
        for product, spec in specs.items():
            checks = checks_by_product.get(product, [])
            blocking = [f.message for f in findings if f.product == product and f.blocking]
            model_status = statuses.get(spec.model_unique_id, "not run")
            if model_status != "success":  # dbt skipped it (an upstream test failed) or it errored
                blocking.append(f"dbt model {model_status}: an upstream model or test failed")
            for message in blocking:
                context.log.error(f"{product}: {message}")
            failed = bool(blocking) or any(not c["passed"] and c["severity"] == "ERROR" for c in checks)
            detail = {"checks": checks, "blocking": blocking, "run_id": context.run_id}
            catalog.record_quality(spec, "failed" if failed else "passed", detail)
        record(
            settings,
            events_from_dbt_run(
                manifest,
                run_results,
                run_id=new_run_id(),
                parent=dagster_parent(context),
                warehouse_path=settings.warehouse_path,
                project_dir=project.project_dir,
                columns=columns,
            ),
        )
        # Failed tests are reported as failed checks and block only their own product's publish;
        # a model that did not build fails the step, so nothing downstream publishes on bad input.
        broken = [
            r["unique_id"]
            for r in run_results.get("results", [])
            if r["unique_id"].startswith(("model.", "seed.", "snapshot.")) and r["status"] == "error"
        ]
        if broken:
            raise dg.Failure(f"dbt could not build {', '.join(broken)}: see the dbt log above")

    return civicmesh_dbt
