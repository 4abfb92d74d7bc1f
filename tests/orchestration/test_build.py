"""`civicmesh build` end to end: real dbt, real Dagster, real publish, real lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.mesh import BuiltMesh, build, rebuild_copy

PRODUCTS = {
    "city_ops.district_scorecard",
    "environment.air_quality",
    "finance.vendor_payments",
    "hr.employees",
    "public_works.open_request_contacts",
    "public_works.response_times",
    "public_works.service_requests",
    "transportation.collisions",
    "transportation.traffic_counts",
    "transportation.traffic_counts_v1",
}

pytestmark = pytest.mark.slow


def test_build_publishes_every_product_with_passing_quality(built_mesh: BuiltMesh) -> None:
    entries = {e.spec.name: e for e in built_mesh.catalog.entries()}
    assert set(entries) == PRODUCTS
    for name, entry in entries.items():
        assert entry.current is not None, name
        assert entry.quality_status == "passed", (name, entry.quality)
        assert entry.current.row_count > 0
        assert entry.current.path.is_relative_to(built_mesh.settings.snapshots_dir)
    assert any("materialized published/hr/employees" in line for line in built_mesh.lines)


def test_snapshots_are_sorted_by_scope_column_for_pruning(built_mesh: BuiltMesh) -> None:
    snapshot = built_mesh.catalog.current("public_works.service_requests")
    districts = pq.read_table(snapshot.path, columns=["district"]).column("district").to_pylist()
    assert districts == sorted(districts)


def test_build_emits_lineage_for_ingest_dbt_and_publish(built_mesh: BuiltMesh) -> None:
    lines = (built_mesh.settings.lineage_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    jobs = {e["job"]["name"] for e in events}
    assert "ingest.raw_public_works.service_requests" in jobs
    assert "dbt.civicmesh.district_scorecard" in jobs
    assert "publish.city_ops.district_scorecard" in jobs
    publish = next(
        e
        for e in events
        if e["job"]["name"] == "publish.public_works.service_requests" and e["eventType"] == "COMPLETE"
    )
    snapshot = built_mesh.catalog.current("public_works.service_requests")
    output = publish["outputs"][0]
    assert output["facets"]["version"]["datasetVersion"] == snapshot.id
    parent = publish["run"]["facets"]["parent"]["run"]["runId"]
    assert parent == built_mesh.report.run_id, "lineage runs point at the Dagster run"


def test_scorecard_lineage_reaches_the_landing_files(built_mesh: BuiltMesh) -> None:
    from lineage.graph import LineageGraph

    lines = (built_mesh.settings.lineage_dir / "events.jsonl").read_text().splitlines()
    graph = LineageGraph.from_events(json.loads(line) for line in lines)
    written = {node for datasets in graph.outputs.values() for node in datasets}
    root = next(n for n in written if n.name == "city_ops.district_scorecard")
    upstream = graph.walk(root, "upstream", depth=20).nodes
    landing = {Path(n.name).name for n in upstream if n.name.endswith(".parquet")}
    assert {"service_requests.parquet", "air_quality.parquet", "traffic_counts.parquet"} <= landing


def test_a_duplicated_key_in_one_landing_file_holds_back_only_what_is_built_from_it(
    built_mesh: BuiltMesh, tmp_path: Path
) -> None:
    settings, catalog = rebuild_copy(built_mesh.settings, tmp_path)
    before = {e.spec.name: e.current.id for e in catalog.entries()}

    # One duplicated row in public works' landing file: the unique test on its staging model fails.
    landing = settings.landing_dir / "public_works" / "service_requests.parquet"
    table = pq.read_table(landing)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), landing)
    report, _ = build(settings)

    outcomes = {p.product: p for p in report.products}
    assert set(outcomes) == PRODUCTS
    held_back = {
        "public_works.service_requests",
        "public_works.open_request_contacts",
        "public_works.response_times",
        "city_ops.district_scorecard",
    }
    assert {p.product for p in report.held_back} == held_back, report.summary()
    for name in held_back:
        (reason,) = outcomes[name].reasons
        assert reason.startswith(
            "dbt test unique_stg_public_works__service_requests_request_id on "
            "stg_public_works__service_requests: 1 failing row"
        ), reason
        entry = catalog.entry(name)
        assert entry.quality_status == "failed"
        assert entry.current.id == before[name], "the last good snapshot stays current"
    for name in PRODUCTS - held_back:
        assert outcomes[name].outcome == "published", (name, outcomes[name])
        assert catalog.entry(name).quality_status == "passed"
        assert catalog.current(name).id == before[name], f"{name}: identical data, no new snapshot"
        assert len(catalog.snapshots(name)) == 1
