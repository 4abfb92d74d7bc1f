"""dbt artifacts -> OpenLineage: one run per executed model, inputs, schema, tests, column lineage."""

from __future__ import annotations

import ol_dbt_artifacts as artifacts
from ol_schema import validate

from lineage import events, naming
from lineage.dbt import NodeColumns, events_from_dbt_run

WAREHOUSE = "/srv/civicmesh/warehouse.duckdb"
NS = "duckdb://local"  # the site, not the warehouse path: a moved home keeps its names


def _events(**kwargs) -> list[dict]:
    run_results = artifacts.run_results(**kwargs)
    parent = naming.dagster_parent("3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a", "build")
    run_id = "01900000-0000-7000-8000-000000000001"
    manifest = artifacts.manifest()
    columns = NodeColumns(manifest, artifacts.warehouse(manifest))
    evs = events_from_dbt_run(manifest, run_results, run_id, parent, WAREHOUSE, columns=columns)
    return [events.to_dict(e) for e in evs]


def _mart(evs: list[dict], event_type: str = "COMPLETE") -> dict:
    return next(
        e
        for e in evs
        if e["job"]["name"] == "dbt.civicmesh.service_requests" and e["eventType"] == event_type
    )


def test_a_start_and_complete_per_executed_model_under_the_invocation_run() -> None:
    evs = _events()
    for event in evs:
        validate(event)
    summary = [(e["eventType"], e["job"]["name"]) for e in evs]
    assert summary == [
        ("START", "dbt.civicmesh.build"),
        ("START", "dbt.civicmesh.stg_service_requests"),
        ("COMPLETE", "dbt.civicmesh.stg_service_requests"),
        ("START", "dbt.civicmesh.service_requests"),
        ("COMPLETE", "dbt.civicmesh.service_requests"),
        ("COMPLETE", "dbt.civicmesh.build"),
    ]
    mart = _mart(evs)
    parent = mart["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == "01900000-0000-7000-8000-000000000001"
    assert parent["root"]["run"]["runId"] == "3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a"
    assert evs[0]["run"]["facets"]["parent"]["job"]["name"] == "dagster.build"
    # times come from dbt's own timing, not from when the events were built
    assert mart["eventTime"].startswith("2026-11-27T06:00:04")


def test_inputs_outputs_and_contract_schema() -> None:
    mart = _mart(_events())
    assert [(i["namespace"], i["name"]) for i in mart["inputs"]] == [
        (NS, "warehouse.main.stg_service_requests")
    ]
    (output,) = mart["outputs"]
    assert (output["namespace"], output["name"]) == (NS, "warehouse.main.service_requests")
    fields = {f["name"]: f.get("type") for f in output["facets"]["schema"]["fields"]}
    assert fields["days_open"] == "integer" and fields["request_id"] == "bigint"
    assert "sql" in mart["job"]["facets"] and "date_diff" in mart["job"]["facets"]["sql"]["query"]
    staging = next(e for e in _events() if e["job"]["name"] == "dbt.civicmesh.stg_service_requests")
    assert staging["inputs"][0]["name"] == "warehouse.raw.public_works_service_requests"


def test_column_lineage_of_a_derived_column() -> None:
    lineage = _mart(_events())["outputs"][0]["facets"]["columnLineage"]["fields"]
    days_open = lineage["days_open"]
    sources = sorted((f["name"], f["field"]) for f in days_open["inputFields"])
    assert sources == [
        ("warehouse.main.stg_service_requests", "closed_at"),
        ("warehouse.main.stg_service_requests", "opened_at"),
    ]
    transformation = days_open["inputFields"][0]["transformations"][0]
    assert transformation["type"] == "DIRECT" and transformation["subtype"] == "TRANSFORMATION"
    assert transformation["masking"] is False
    # pass-through columns are identities, through the CTE and `select *`
    district = lineage["district"]
    assert [(f["field"], f["transformations"][0]["subtype"]) for f in district["inputFields"]] == [
        ("district", "IDENTITY")
    ]
    # a hashed PII column is still derived from it, marked as masking
    key = lineage["reporter_key"]
    assert key["inputFields"][0]["field"] == "reporter_email"
    assert key["inputFields"][0]["transformations"][0]["masking"] is True
    assert key["transformationType"] == "MASKED"


def test_test_results_become_data_quality_assertions() -> None:
    assertions = _mart(_events(test_status="fail"))["outputs"][0]["facets"]["dataQualityAssertions"][
        "assertions"
    ]
    by_name = {(a["assertion"], a.get("column")): a["success"] for a in assertions}
    assert by_name == {("unique", "request_id"): False, ("not_null", "district"): True}


def test_a_failed_model_is_a_fail_event_with_the_dbt_message() -> None:
    evs = _events(mart_status="error")
    fail = _mart(evs, "FAIL")
    assert fail["outputs"] == []
    assert "Binder Error" in fail["run"]["facets"]["errorMessage"]["message"]
    assert evs[-1]["eventType"] == "FAIL" and evs[-1]["job"]["name"] == "dbt.civicmesh.build"


def test_the_same_artifacts_give_the_same_run_ids() -> None:
    first = [e["run"]["runId"] for e in _events()]
    second = [e["run"]["runId"] for e in _events()]
    assert first == second
    assert len(set(first)) == 3  # invocation + two models


def test_skipped_nodes_produce_no_events() -> None:
    run_results = artifacts.run_results()
    run_results["results"][1]["status"] = "skipped"
    evs = events_from_dbt_run(artifacts.manifest(), run_results, events.new_run_id(), None, WAREHOUSE)
    assert all(e.job.name != "dbt.civicmesh.service_requests" for e in evs)


def test_a_model_this_invocation_did_not_compile_gets_the_sql_dbt_last_wrote(tmp_path) -> None:
    from lineage.dbt import fill_compiled_code

    manifest = artifacts.manifest()
    mart = manifest["nodes"]["model.civicmesh.service_requests"]
    sql, mart["compiled_code"] = mart["compiled_code"], None  # skipped, or outside a subset build
    mart["package_name"], mart["original_file_path"] = "civicmesh", "models/public_works/service_requests.sql"
    compiled = tmp_path / "compiled" / "civicmesh" / "models" / "public_works" / "service_requests.sql"
    compiled.parent.mkdir(parents=True)
    compiled.write_text(sql)
    assert fill_compiled_code(manifest, tmp_path)["nodes"][mart["unique_id"]]["compiled_code"] == sql
    columns = NodeColumns(manifest, artifacts.warehouse(manifest))
    assert columns.lineage(mart["unique_id"]).column("reporter_key").direct[0].column == "reporter_email"
