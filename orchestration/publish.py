"""Publish: one asset per data product, downstream of its dbt model, obeying the publish gate.

The dbt step records one gate result per product for this run (`orchestration.gate`); a publish
step publishes only on `passed` or `warned` from this very run, so a held-back product (or one with
no gate result: fail closed) keeps its previous snapshot current. Dagster skips the step when the
model itself was not built.
"""

from typing import Any, NoReturn

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator

from lineage.dbt import relation_name
from lineage.events import new_run_id, publish_events
from lineage.naming import duckdb_dataset
from meshcore.catalog import Catalog, Snapshot
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.snapshots import snapshot_order, write_snapshot
from meshcore.store import utcnow
from orchestration.lineage_hooks import dagster_parent, record
from orchestration.resources import MeshResource

PUBLISH_PREFIX = "published"


def publish_key(spec: ProductSpec) -> dg.AssetKey:
    return dg.AssetKey([PUBLISH_PREFIX, spec.department, spec.product])


def _held_back(quality: dict, run_id: str) -> list[str]:
    """Why the gate holds the product back in run `run_id`; empty when it may publish."""
    if quality.get("run_id") != run_id:
        return ["no publish gate result from this build's dbt step"]
    if quality.get("status") not in ("passed", "warned"):
        return [c["message"] for c in quality.get("failed_checks") or ()] or ["the publish gate failed"]
    return []


def record_failed(settings: Settings, error: str, lineage: dict[str, Any]) -> None:
    """The failed publish run in lineage (no snapshot), with `error`."""
    failed = publish_events(
        snapshot_id=None, snapshot_path=None, row_count=None, status="FAIL", error=error, **lineage
    )
    record(settings, failed)


def hold_back(settings: Settings, spec: ProductSpec, reasons: list[str], lineage: dict[str, Any]) -> NoReturn:
    """Record the failed publish run in lineage and fail the step without a retry: a gate decision,
    not a transient fault (a retry of the run would decide the same)."""
    failed = publish_events(
        snapshot_id=None,
        snapshot_path=None,
        row_count=None,
        status="FAIL",
        error="; ".join(reasons),
        **lineage,
    )
    record(settings, failed)
    raise dg.Failure(f"{spec.name} not published: {'; '.join(reasons)}", allow_retries=False)


def write_and_publish(
    settings: Settings,
    catalog: Catalog,
    spec: ProductSpec,
    relation: str,
    quality: dict[str, Any],
    run_id: str,
    lineage: dict[str, Any],
) -> Snapshot:
    """Write the mart `relation` as a Parquet snapshot and make it current in the catalog; on any
    failure the publish run is recorded as failed in lineage and the error raised."""
    try:
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            folder = settings.snapshots_dir / spec.department / spec.product
            unique = (spec.key,) if spec.key else ()
            written = write_snapshot(con, relation, folder, snapshot_order(spec), unique)
        return catalog.publish(spec, written, quality=quality, run_id=run_id)
    except Exception as exc:
        record_failed(settings, str(exc), lineage)
        raise


def record_published(
    settings: Settings, catalog: Catalog, snapshot: Snapshot, lineage: dict[str, Any]
) -> None:
    """The completed publish run in lineage: the snapshot (path relative to the home), its schema,
    checksum and size."""
    record(
        settings,
        publish_events(
            snapshot_id=snapshot.id,
            snapshot_path=catalog.stored_path(snapshot.path),
            row_count=snapshot.row_count,
            schema=snapshot.schema,
            checksum=snapshot.checksum,
            byte_size=snapshot.byte_size,
            ended_at=utcnow(),
            **lineage,
        ),
    )


def publish_asset(spec: ProductSpec, model_key: dg.AssetKey, relation: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=publish_key(spec),
        deps=[model_key],
        group_name=spec.department,
        owners=[spec.owner],
        kinds={"parquet"},
        description=f"Publishes {spec.name} ({spec.classification}) as an immutable Parquet snapshot.",
        tags={"civicmesh/classification": spec.classification},
    )
    def _publish(context: dg.AssetExecutionContext, mesh: MeshResource) -> dg.MaterializeResult:
        settings, catalog = mesh.settings, mesh.catalog()
        lineage = {
            "run_id": new_run_id(),
            "parent": dagster_parent(context),
            "spec": spec,
            "source": duckdb_dataset(settings.warehouse_path, relation),
            "started_at": utcnow(),
        }
        entry = catalog.entry(spec.name)
        quality = entry.quality if entry and entry.quality else {}
        reasons = _held_back(quality, context.run_id)
        if reasons:
            hold_back(settings, spec, reasons, lineage)
        snapshot = write_and_publish(settings, catalog, spec, relation, quality, context.run_id, lineage)
        record_published(settings, catalog, snapshot, lineage)
        context.log.info(f"{spec.name}: snapshot {snapshot.id} ({snapshot.row_count} rows) is current")
        return dg.MaterializeResult(
            metadata={
                "snapshot_id": snapshot.id,
                "dagster/row_count": snapshot.row_count,
                "checksum": snapshot.checksum,
                "path": str(snapshot.path),
            }
        )

    return _publish


def publish_assets(manifest: dict, translator: DagsterDbtTranslator, specs: list[ProductSpec]) -> list:
    assets = []
    for spec in specs:
        node = manifest["nodes"][spec.model_unique_id]
        assets.append(publish_asset(spec, translator.get_asset_key(node), relation_name(node)))
    return assets
