"""A recorded build and two reads (one denied), shared by the graph, CLI and query tests."""

from __future__ import annotations

import ol_dbt_artifacts as artifacts

from lineage import events, naming
from lineage.dbt import NodeColumns, events_from_dbt_run
from lineage.recorder import LineageRecorder
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from policies.decision import Decision

COLUMNS = ("request_id", "district", "category", "opened_at", "closed_at", "days_open", "reporter_key")
SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests",
    columns=tuple(ColumnSpec(c, "varchar") for c in COLUMNS),
)


def record_a_build_and_reads(settings: Settings) -> None:
    warehouse = settings.warehouse_path
    landing = settings.landing_dir / "public_works" / "service_requests.csv"
    parent = naming.dagster_parent("3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a", "build")
    recorder = LineageRecorder.from_settings(settings)
    recorder.record(
        events.ingest_events(
            events.new_run_id(),
            parent,
            landing,
            "raw.public_works_service_requests",
            10,
            warehouse_path=warehouse,
        )
    )
    manifest = artifacts.manifest()
    columns = NodeColumns(manifest, artifacts.warehouse(manifest))
    recorder.record(
        events_from_dbt_run(
            manifest, artifacts.run_results(), events.new_run_id(), parent, warehouse, columns=columns
        )
    )
    recorder.record(
        events.publish_events(
            events.new_run_id(),
            parent,
            SPEC,
            "snap-1",
            None,
            10,
            source=naming.duckdb_dataset(warehouse, "main.service_requests"),
        )
    )
    allow = Decision(True, "dana", SPEC.name, "read", "p, dana", "ok", "v1")
    deny = Decision(False, "mallory", SPEC.name, "read", None, "no rule", "v1")
    recorder.record(events.read_event("r1", "dana", SPEC, "snap-1", ["district"], allow, 3))
    recorder.record(events.read_event("r2", "mallory", SPEC, "snap-1", [], deny, 0))
    recorder.stop()
