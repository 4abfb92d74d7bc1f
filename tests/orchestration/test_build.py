"""`civicmesh build` end to end: real dbt, real Dagster, real publish, real lineage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from civicmesh.catalog import Catalog
from civicmesh.store import get_engine
from tests.mesh import BuiltMesh, build, copy_repo_transforms, isolated_settings

PRODUCTS = {
    "city_ops.district_scorecard",
    "environment.air_quality",
    "finance.vendor_payments",
    "hr.employees",
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


def _rebuild_copy(built_mesh: BuiltMesh, tmp_path: Path, repo_root: Path | None = None):
    home = tmp_path / "home"
    shutil.copytree(built_mesh.settings.home, home, ignore=shutil.ignore_patterns("dagster", "logs"))
    settings = isolated_settings(home, repo_root or built_mesh.settings.repo_root)
    return settings, Catalog(get_engine(settings.metadata_url), settings.home)


def test_rebuild_of_unchanged_data_adds_no_snapshot_and_a_failing_test_blocks_publish(
    built_mesh: BuiltMesh, tmp_path: Path
) -> None:
    settings, catalog = _rebuild_copy(built_mesh, tmp_path)
    before = {e.spec.name: e.current.id for e in catalog.entries()}

    # Break the key of service requests: the unique test fails, its publish must not run.
    landing = settings.landing_dir / "public_works" / "service_requests.parquet"
    table = pq.read_table(landing)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), landing)
    report, _ = build(settings)

    assert any("service_requests" in c and "unique" in c for c in report.failed_checks), report.failed_checks
    after = {e.spec.name: e for e in catalog.entries()}
    failed = after["public_works.service_requests"]
    assert failed.quality_status == "failed"
    assert failed.current.id == before["public_works.service_requests"], "last good snapshot stays current"
    for name in PRODUCTS - {
        "public_works.service_requests",
        "public_works.response_times",
        "city_ops.district_scorecard",
    }:
        assert after[name].current.id == before[name], f"{name}: identical data, no new snapshot"
        assert len(catalog.snapshots(name)) == 1


def test_undeclared_pii_derivative_blocks_publish_naming_the_column_path(
    built_mesh: BuiltMesh, tmp_path: Path
) -> None:
    repo = copy_repo_transforms(tmp_path / "repo")
    marts = repo / "transforms" / "models" / "public_works" / "marts"
    sql = (marts / "response_times.sql").read_text()
    sql = sql.replace(
        "count(*) as requests_opened,",
        "count(*) as requests_opened,\n        min(requester_email) as first_requester,",
    )
    sql = sql.replace("    requests_opened,\n", "    requests_opened,\n    first_requester,\n", 1)
    (marts / "response_times.sql").write_text(sql)
    yml = (marts / "response_times.yml").read_text()
    yml = yml.replace(
        "      - name: month\n",
        "      - name: first_requester\n        data_type: varchar\n      - name: month\n",
        1,
    )
    (marts / "response_times.yml").write_text(yml)
    settings, catalog = _rebuild_copy(built_mesh, tmp_path, repo_root=repo)
    before = catalog.current("public_works.response_times")

    report, _lines = build(settings)

    failure = next(s for s in report.failed_steps if "response_times" in s)
    assert "first_requester" in failure and "requester_email" in failure, failure
    entry = catalog.entry("public_works.response_times")
    assert entry.quality_status == "failed"
    assert entry.current.id == before.id
