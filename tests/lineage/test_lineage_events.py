"""Event builders: spec-valid events, run ids, parent facets, consistent names across steps."""

from __future__ import annotations

import uuid
from pathlib import Path

import ol_dbt_artifacts as artifacts
import pytest
from ol_schema import validate
from openlineage.client.serde import Serde

from lineage import events, naming
from lineage.dbt import events_from_dbt_run
from meshcore.products import ColumnSpec, ProductSpec
from policies.decision import Decision, RowFilter

WAREHOUSE = Path("/srv/civicmesh/warehouse.duckdb")
DAGSTER_RUN = "3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a"

SPEC = ProductSpec(
    department="public_works",
    product="service_requests",
    classification="internal",
    owner="alice@city.example",
    description="Service requests",
    columns=(
        ColumnSpec("request_id", "bigint"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("reporter_email", "varchar", tags=("pii",), mask="hash"),
    ),
    scope_column="district",
    model_unique_id="model.civicmesh.service_requests",
)


def _dicts(evs):
    return [events.to_dict(e) for e in evs]


def _all_events() -> list[dict]:
    parent = naming.dagster_parent(DAGSTER_RUN, "build_all")
    out = _dicts(
        events.ingest_events(
            events.new_run_id(),
            parent,
            Path("/srv/civicmesh/landing/public_works/service_requests.csv"),
            "raw.public_works_service_requests",
            1000,
            warehouse_path=WAREHOUSE,
            schema=[("request_id", "BIGINT")],
        )
    )
    out += _dicts(
        events_from_dbt_run(
            artifacts.manifest(), artifacts.run_results(), events.new_run_id(), parent, WAREHOUSE
        )
    )
    out += _dicts(
        events.publish_events(
            events.new_run_id(),
            parent,
            SPEC,
            "public_works.service_requests@20261127T060000000000Z-abcd1234",
            "/srv/civicmesh/snapshots/public_works.service_requests/x.parquet",
            1000,
            [("request_id", "BIGINT"), ("district", "VARCHAR"), ("reporter_email", "VARCHAR")],
            source=naming.duckdb_dataset(WAREHOUSE, "main.service_requests"),
            checksum="ab" * 32,
            byte_size=4096,
        )
    )
    decision = Decision(
        allowed=True,
        subject="dana",
        product=SPEC.name,
        action="read",
        rule="p, role:supervisor, public_works, read",
        reason="supervisors of public_works read its products",
        policy_version="sha256:1234",
        masks={"reporter_email": "hash"},
        row_filter=RowFilter("district", ("D3",)),
    )
    out.append(
        events.to_dict(
            events.read_event("req-1", "dana", SPEC, "snap-1", ["request_id", "reporter_email"], decision, 42)
        )
    )
    return out


def test_every_event_validates_against_the_openlineage_schema() -> None:
    evs = _all_events()
    assert len(evs) > 10
    for event in evs:
        validate(event)


def test_the_schema_check_is_not_vacuous() -> None:
    event = _all_events()[0]
    event["run"]["runId"] = "not-a-uuid"
    with pytest.raises(AssertionError, match="runId"):
        validate(event)
    event = _all_events()[0]
    del event["run"]["facets"]["parent"]["_producer"]
    with pytest.raises(AssertionError, match="_producer"):
        validate(event)


def test_start_and_terminal_share_a_uuid7_run_id_with_the_dagster_parent() -> None:
    run_id = events.new_run_id()
    start, complete = _dicts(
        events.ingest_events(
            run_id,
            naming.dagster_parent(DAGSTER_RUN, "build"),
            "/l/a.csv",
            "raw.a",
            3,
            warehouse_path=WAREHOUSE,
        )
    )
    assert start["eventType"] == "START" and complete["eventType"] == "COMPLETE"
    assert start["run"]["runId"] == complete["run"]["runId"] == run_id
    assert uuid.UUID(run_id).version == 7
    parent = complete["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == DAGSTER_RUN  # a Dagster run id is used as is, so runs match
    assert parent["job"] == {"namespace": "civicmesh", "name": "dagster.build", "facets": {}}
    assert start["eventTime"] <= complete["eventTime"]


def test_non_uuid_orchestrator_ids_map_to_a_stable_uuid() -> None:
    assert naming.as_run_id("manual-42") == naming.as_run_id("manual-42")
    uuid.UUID(naming.as_run_id("manual-42"))


def test_failed_run_has_error_and_no_outputs() -> None:
    start, fail = _dicts(
        events.publish_events(
            events.new_run_id(),
            None,
            SPEC,
            None,
            None,
            None,
            status="FAIL",
            error="quality gate failed: not_null(district)",
        )
    )
    assert start["eventType"] == "START"
    assert fail["eventType"] == "FAIL" and fail["outputs"] == []
    assert "not_null" in fail["run"]["facets"]["errorMessage"]["message"]
    validate(fail)


def test_names_line_up_from_landing_file_to_consumer() -> None:
    evs = [
        e
        for e in _all_events()
        if e["eventType"] in ("COMPLETE", None) or e["job"]["name"].startswith("consumer")
    ]
    by_job = {e["job"]["name"]: e for e in evs}
    ingest = by_job["ingest.raw.public_works_service_requests"]
    staging = by_job["dbt.civicmesh.stg_service_requests"]
    mart = by_job["dbt.civicmesh.service_requests"]
    publish = by_job["publish.public_works.service_requests"]
    read = by_job["consumer.dana.read"]

    def ref(d):
        return d["namespace"], d["name"]

    assert ingest["inputs"][0] == {**ingest["inputs"][0], "namespace": "file"}
    assert ref(ingest["outputs"][0]) == ref(staging["inputs"][0])
    assert ref(staging["outputs"][0]) == ref(mart["inputs"][0])
    assert ref(mart["outputs"][0]) == ref(publish["inputs"][0])
    assert (
        ref(publish["outputs"][0])
        == ref(read["inputs"][0])
        == ("civicmesh://local", "public_works.service_requests")
    )
    assert ref(mart["outputs"][0]) == ("duckdb://local", "warehouse.main.service_requests")


def test_publish_output_is_versioned_by_snapshot_and_carries_governance() -> None:
    publish = next(
        e for e in _all_events() if e["job"]["name"].startswith("publish.") and e["eventType"] == "COMPLETE"
    )
    output = publish["outputs"][0]
    assert output["facets"]["version"]["datasetVersion"].startswith("public_works.service_requests@")
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == [
        "request_id",
        "district",
        "reporter_email",
    ]
    assert output["facets"]["civicmesh_product"]["piiColumns"] == {"reporter_email": "hash"}
    assert output["outputFacets"]["outputStatistics"] == {
        **output["outputFacets"]["outputStatistics"],
        "rowCount": 1000,
    }
    pii = [t for t in output["facets"]["tags"]["tags"] if t["key"] == "pii"]
    assert pii == [{"key": "pii", "value": "hash", "source": "civicmesh", "field": "reporter_email"}]


def test_read_event_carries_the_decision_and_only_returned_columns() -> None:
    read = _all_events()[-1]
    assert read["eventType"] == "COMPLETE" and read["outputs"] == []
    (source,) = read["inputs"]
    assert [f["name"] for f in source["facets"]["schema"]["fields"]] == ["request_id", "reporter_email"]
    assert source["facets"]["version"]["datasetVersion"] == "snap-1"
    access = read["run"]["facets"]["civicmesh_access"]
    assert access["allowed"] is True and access["rule"].startswith("p, role:supervisor")
    assert access["policyVersion"] == "sha256:1234"
    assert access["masks"] == {"reporter_email": "hash"}
    assert access["rowFilter"] == {"column": "district", "values": ["D3"]}
    assert access["rowsReturned"] == 42 and access["requestId"] == "req-1"


def test_denied_read_is_audited_but_is_no_lineage_edge() -> None:
    denied = Decision(False, "mallory", SPEC.name, "read", None, "no rule grants read", "sha256:1234")
    event = events.to_dict(events.read_event("req-2", "mallory", SPEC, "snap-1", [], denied, 0))
    validate(event)
    assert event["eventType"] == "FAIL" and event["inputs"] == []
    assert event["run"]["facets"]["civicmesh_access"]["allowed"] is False
    assert "rule" not in event["run"]["facets"]["civicmesh_access"]


def test_export_is_its_own_consumer_job() -> None:
    allow = Decision(True, "erin", SPEC.name, "export", "p, erin, export", "granted", "v1")
    event = events.to_dict(
        events.read_event("r3", "erin", SPEC, "s", ["request_id"], allow, 10, export_format="csv")
    )
    assert event["job"]["name"] == "consumer.erin.export"
    assert event["run"]["facets"]["civicmesh_access"]["exportFormat"] == "csv"


def test_duckdb_naming_defaults_database_and_schema() -> None:
    assert naming.duckdb_dataset("/d/warehouse.duckdb", "t").name == "warehouse.main.t"
    assert naming.duckdb_dataset("/d/warehouse.duckdb", '"raw"."t"').name == "warehouse.raw.t"
    with pytest.raises(ValueError):
        naming.duckdb_dataset("/d/w.duckdb", "a.b.c.d")


def test_fast_serialisation_matches_the_openlineage_client() -> None:
    parent = naming.dagster_parent(DAGSTER_RUN, "build_all")
    built = events.ingest_events(
        events.new_run_id(), parent, "/l/a.csv", "raw.a", 1, warehouse_path=WAREHOUSE
    )
    built += events_from_dbt_run(
        artifacts.manifest(), artifacts.run_results(), events.new_run_id(), parent, WAREHOUSE
    )
    built += events.publish_events(
        events.new_run_id(), parent, SPEC, "s", "/p", 1, source=naming.duckdb_dataset(WAREHOUSE, "m")
    )
    decision = Decision(
        True, "dana", SPEC.name, "read", "r", "ok", "v1", {"reporter_email": "hash"}, RowFilter("d", ("D3",))
    )
    built.append(events.read_event("q", "dana", SPEC, "s", ["district"], decision, 1))
    for event in built:
        assert events.to_dict(event) == Serde.to_dict(event)
