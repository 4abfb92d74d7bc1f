"""Ingest assets: one per dbt source table, loading its landing file into the warehouse.

The list comes from the dbt sources in the manifest (`raw_<department>.<table>`), never a
hand-kept list, so a department adds a landing table by declaring the source.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator

from lineage.events import ingest_events, new_run_id
from meshcore.store import utcnow
from orchestration.landing import LandingTable, load_into_warehouse
from orchestration.lineage_hooks import dagster_parent, record
from orchestration.resources import MeshResource

RAW_PREFIX = "raw_"


def _department(source: Mapping[str, Any]) -> str:
    return source["source_name"].removeprefix(RAW_PREFIX)


def _group_owner(manifest: Mapping[str, Any], department: str) -> list[str]:
    for group in (manifest.get("groups") or {}).values():
        if group["name"] == department and (group.get("owner") or {}).get("email"):
            return [group["owner"]["email"]]
    return []


def _ingest_asset(source: Mapping[str, Any], key: dg.AssetKey, owners: list[str]) -> dg.AssetsDefinition:
    department, table = _department(source), source["name"]

    @dg.asset(
        key=key,
        name=None,
        group_name=department,
        owners=owners,
        kinds={"parquet", "duckdb"},
        description=f"Landing file {department}/{table}.parquet loaded into {source['schema']}.{table}.",
        metadata={"landing_file": f"{department}/{table}.parquet"},
    )
    def _ingest(context: dg.AssetExecutionContext, mesh: MeshResource) -> dg.MaterializeResult:
        settings = mesh.settings
        landing = LandingTable(department, table, settings.landing_dir / department / f"{table}.parquet")
        if not landing.path.exists():
            raise dg.Failure(
                f"landing file {landing.path} is missing: run `civicmesh generate` or deliver the file"
            )
        lineage: dict[str, Any] = {
            "run_id": new_run_id(),
            "parent": dagster_parent(context),
            "landing_path": landing.path,
            "raw_relation": f"{source['schema']}.{table}",
            "warehouse_path": settings.warehouse_path,
            "started_at": utcnow(),
        }
        try:
            with duckdb.connect(str(settings.warehouse_path)) as con:
                con.execute("SET enable_progress_bar = false")
                rows = load_into_warehouse(con, landing)
        except Exception as exc:
            record(settings, ingest_events(row_count=None, status="FAIL", error=str(exc), **lineage))
            raise
        record(settings, ingest_events(row_count=rows, ended_at=utcnow(), **lineage))
        return dg.MaterializeResult(metadata={"dagster/row_count": rows, "path": str(landing.path)})

    return _ingest


def ingest_assets(manifest: Mapping[str, Any], translator: DagsterDbtTranslator) -> list[dg.AssetsDefinition]:
    assets = []
    for source in (manifest.get("sources") or {}).values():
        if not source["source_name"].startswith(RAW_PREFIX):
            continue
        key = translator.get_asset_key(source)
        assets.append(_ingest_asset(source, key, _group_owner(manifest, _department(source))))
    return assets
