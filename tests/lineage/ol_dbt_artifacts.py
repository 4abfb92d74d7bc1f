"""A small hand-written dbt 1.11 manifest + run_results pair (the fields civicmesh reads, in dbt's shape)."""

from __future__ import annotations

from typing import Any

INVOCATION = "9f0a3c1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
SCHEMA_MANIFEST = "https://schemas.getdbt.com/dbt/manifest/v12.json"
SCHEMA_RESULTS = "https://schemas.getdbt.com/dbt/run-results/v6.json"

STG_SQL = (
    "select request_id, district, category, opened_at, closed_at, reporter_email\n"
    'from "warehouse"."raw"."public_works_service_requests"\nwhere request_id is not null'
)
MART_SQL = (
    'with requests as (\n    select * from "warehouse"."main"."stg_service_requests"\n)\n'
    "select\n    request_id,\n    district,\n    category,\n    opened_at,\n    closed_at,\n"
    "    date_diff('day', opened_at, closed_at) as days_open,\n"
    "    md5(reporter_email) as reporter_key\nfrom requests"
)


def _column(name: str, data_type: str, description: str = "", **meta: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "meta": meta,
        "data_type": data_type,
        "constraints": [],
        "quote": None,
        "config": {"meta": meta, "tags": []},
        "tags": [],
        "granularity": None,
        "doc_blocks": [],
    }


def _model(name: str, schema: str, sql: str, depends: list[str], columns: list[dict[str, Any]], **extra: Any):
    uid = f"model.civicmesh.{name}"
    return uid, {
        "database": "warehouse",
        "schema": schema,
        "name": name,
        "resource_type": "model",
        "package_name": "civicmesh",
        "path": f"public_works/{name}.sql",
        "original_file_path": f"models/public_works/{name}.sql",
        "unique_id": uid,
        "fqn": ["civicmesh", "public_works", name],
        "alias": name,
        "checksum": {"name": "sha256", "checksum": "0" * 64},
        "config": {
            "enabled": True,
            "materialized": "table",
            "contract": {"enforced": bool(extra.get("access") == "public"), "alias_types": True},
            "group": "public_works",
            "meta": extra.get("meta", {}),
        },
        "tags": [],
        "description": extra.get("description", ""),
        "columns": {c["name"]: c for c in columns},
        "group": "public_works",
        "access": extra.get("access", "protected"),
        "depends_on": {"macros": [], "nodes": depends},
        "compiled_path": f"target/compiled/civicmesh/models/public_works/{name}.sql",
        "compiled": True,
        "compiled_code": sql,
        "relation_name": f'"warehouse"."{schema}"."{name}"',
        "contract": {
            "enforced": bool(extra.get("access") == "public"),
            "alias_types": True,
            "checksum": None,
        },
        "version": None,
        "latest_version": None,
    }


def _test(name: str, model: str, column: str, test: str) -> tuple[str, dict[str, Any]]:
    uid = f"test.civicmesh.{name}.abc123"
    return uid, {
        "database": "warehouse",
        "schema": "main_dbt_test__audit",
        "name": name,
        "resource_type": "test",
        "package_name": "civicmesh",
        "unique_id": uid,
        "config": {"enabled": True, "severity": "ERROR", "materialized": "test"},
        "depends_on": {"macros": [f"macro.dbt.test_{test}"], "nodes": [f"model.civicmesh.{model}"]},
        "column_name": column,
        "file_key_name": f"models.{model}",
        "attached_node": f"model.civicmesh.{model}",
        "test_metadata": {
            "name": test,
            "kwargs": {"column_name": column, "model": "{{ get_where_subquery(ref('x')) }}"},
            "namespace": None,
        },
    }


def manifest() -> dict[str, Any]:
    source_uid = "source.civicmesh.raw.public_works_service_requests"
    columns = [
        _column("request_id", "bigint", "Request number"),
        _column("district", "varchar"),
        _column("category", "varchar"),
        _column("opened_at", "date"),
        _column("closed_at", "date"),
    ]
    stg = _model("stg_service_requests", "main", STG_SQL, [source_uid], columns)
    mart = _model(
        "service_requests",
        "main",
        MART_SQL,
        [stg[0]],
        [*columns, _column("days_open", "integer", "Days until closed"), _column("reporter_key", "varchar")],
        access="public",
        description="Service requests",
        meta={"civicmesh": {"classification": "internal", "scope_column": "district"}},
    )
    tests = [
        _test("unique_service_requests_request_id", "service_requests", "request_id", "unique"),
        _test("not_null_service_requests_district", "service_requests", "district", "not_null"),
    ]
    return {
        "metadata": {
            "dbt_schema_version": SCHEMA_MANIFEST,
            "dbt_version": "1.11.2",
            "generated_at": "2026-11-27T06:00:00.000000Z",
            "invocation_id": INVOCATION,
            "project_name": "civicmesh",
            "adapter_type": "duckdb",
        },
        "nodes": dict([stg, mart, *tests]),
        "sources": {
            source_uid: {
                "database": "warehouse",
                "schema": "raw",
                "name": "public_works_service_requests",
                "resource_type": "source",
                "package_name": "civicmesh",
                "unique_id": source_uid,
                "source_name": "raw",
                "identifier": "public_works_service_requests",
                "relation_name": '"warehouse"."raw"."public_works_service_requests"',
                "original_file_path": "models/public_works/_sources.yml",
                # PII is declared where data enters; staging and marts inherit it through lineage.
                "columns": {
                    c["name"]: c for c in [*columns, _column("reporter_email", "varchar", mask="hash")]
                },
            }
        },
        "groups": {
            "group.civicmesh.public_works": {
                "name": "public_works",
                "owner": {"email": "alice@city.example", "name": "Public Works"},
            }
        },
        "parent_map": {},
        "child_map": {},
    }


def _result(
    uid: str, status: str, start: str, end: str, message: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "status": status,
        "timing": [
            {
                "name": "compile",
                "started_at": f"2026-11-27T06:00:{start}Z",
                "completed_at": f"2026-11-27T06:00:{start}Z",
            },
            {
                "name": "execute",
                "started_at": f"2026-11-27T06:00:{start}Z",
                "completed_at": f"2026-11-27T06:00:{end}Z",
            },
        ],
        "thread_id": "Thread-1 (worker)",
        "execution_time": 0.1,
        "adapter_response": {"_message": "OK", "rows_affected": extra.get("rows")} if "rows" in extra else {},
        "message": message,
        "failures": extra.get("failures"),
        "unique_id": uid,
        "compiled": True,
        "compiled_code": "",
        "relation_name": None,
        "batch_results": None,
    }


def run_results(mart_status: str = "success", test_status: str = "pass") -> dict[str, Any]:
    return {
        "metadata": {
            "dbt_schema_version": SCHEMA_RESULTS,
            "dbt_version": "1.11.2",
            "generated_at": "2026-11-27T06:00:09.000000Z",
            "invocation_id": INVOCATION,
        },
        "results": [
            _result(
                "model.civicmesh.stg_service_requests", "success", "01.000000", "02.000000", "OK", rows=1000
            ),
            _result(
                "model.civicmesh.service_requests",
                mart_status,
                "03.000000",
                "04.000000",
                "OK" if mart_status == "success" else "Binder Error: column x not found",
            ),
            _result(
                "test.civicmesh.unique_service_requests_request_id.abc123",
                test_status,
                "05.000000",
                "05.500000",
                failures=0 if test_status == "pass" else 3,
            ),
            _result(
                "test.civicmesh.not_null_service_requests_district.abc123",
                "pass",
                "06.000000",
                "06.500000",
                failures=0,
            ),
        ],
        "elapsed_time": 6.2,
        "args": {"which": "build", "target": "dev"},
    }


def warehouse(manifest: dict[str, Any]) -> dict[str, tuple[tuple[str, str], ...]]:
    """Build the manifest's relations in a real (in-memory) DuckDB and return what it says each node
    returns (`lineage.dbt.warehouse_columns`): sources as empty tables of their declared columns,
    models as views of their compiled SQL, in dependency order."""
    import duckdb

    from lineage.dbt import relation_key, warehouse_columns

    con = duckdb.connect()
    con.execute("ATTACH ':memory:' AS warehouse")
    nodes = {**manifest["nodes"], **manifest["sources"]}
    for key in {relation_key(n).rsplit(".", 1)[0] for n in nodes.values() if "schema" in n}:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {key}")
    built = {
        relation_key(n) for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot")
    }
    for node in manifest["sources"].values():  # two sources may name one table: the first creates it
        if relation_key(node) in built:  # a source naming a model's relation
            continue
        columns = [f"{c['name']} {c.get('data_type') or 'varchar'}" for c in node["columns"].values()]
        con.execute(f"CREATE TABLE IF NOT EXISTS {relation_key(node)} ({', '.join(columns)})")
    pending = [n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot")]
    while pending:
        node = pending.pop(0)
        try:
            if node["resource_type"] == "snapshot":  # a table of its SQL's rows and dbt's columns
                added = (
                    "md5('') AS dbt_scd_id, now() AS dbt_updated_at, now() AS dbt_valid_from, "
                    "NULL AS dbt_valid_to"
                )
                con.execute(
                    f"CREATE TABLE {relation_key(node)} AS SELECT *, {added} FROM ({node['compiled_code']})"
                )
            else:
                con.execute(f"CREATE VIEW {relation_key(node)} AS {node['compiled_code']}")
        except duckdb.CatalogException:
            pending.append(node)  # an upstream view is not there yet
    return warehouse_columns(con, manifest)
