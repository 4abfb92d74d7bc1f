"""The dbt project builds for real on generated data, and dbt's mesh rules hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from meshcore.products import load_product_specs

pytestmark = pytest.mark.slow

DEPARTMENTS = {"public_works", "transportation", "environment", "finance", "hr", "city_ops"}


def query(built, sql: str) -> list[tuple]:
    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_build_passes_every_model_test_and_unit_test(built) -> None:
    assert built.result.returncode == 0, built.result.stdout[-4000:]
    out = built.result.stdout
    assert "ERROR=0" in out and "WARN=0" in out
    assert "unit_test" in out  # the marts with logic are unit-tested in the same build
    # dbt 1.11 syntax only: no deprecation warnings in the log.
    assert "deprecat" not in out.lower(), out


def relation(built, unique_id: str) -> tuple[str, str]:
    """(schema, table) of a model as built, from the manifest (versions are `<name>_v<N>` tables)."""
    node = json.loads(built.manifest.read_text())["nodes"][unique_id]
    return node["schema"], node["alias"]


def test_every_department_ships_products_matching_their_contract(built) -> None:
    specs = load_product_specs(built.manifest)
    assert {s.department for s in specs} == DEPARTMENTS
    for spec in specs:
        schema, table = relation(built, spec.model_unique_id)
        assert schema == spec.department, spec.name
        columns = query(
            built,
            "SELECT column_name, lower(data_type) FROM information_schema.columns WHERE table_schema = "
            f"'{schema}' AND table_name = '{table}' ORDER BY ordinal_position",
        )
        assert [c[0] for c in columns] == [c.name for c in spec.columns], spec.name
        assert [c[1] for c in columns] == [c.data_type for c in spec.columns], spec.name
        (rows,) = query(built, f"SELECT count(*) FROM {schema}.{table}")[0]
        assert rows > 0, spec.name


def test_both_versions_of_traffic_counts_build_side_by_side(built) -> None:
    """v1 (pinned by city_ops) and v2 (latest) are separate tables with the same rows, renamed counts."""
    specs = {s.name: s for s in load_product_specs(built.manifest)}
    assert relation(built, specs["transportation.traffic_counts"].model_unique_id) == (
        "transportation",
        "traffic_counts_v2",
    )
    assert relation(built, specs["transportation.traffic_counts_v1"].model_unique_id) == (
        "transportation",
        "traffic_counts_v1",
    )
    (v1_rows, v2_rows, mismatched) = query(
        built,
        "SELECT (SELECT count(*) FROM transportation.traffic_counts_v1),"
        " (SELECT count(*) FROM transportation.traffic_counts_v2),"
        " (SELECT count(*) FROM transportation.traffic_counts_v1 v1"
        "  FULL JOIN transportation.traffic_counts_v2 v2 USING (count_id)"
        "  WHERE v1.vehicle_count IS DISTINCT FROM v2.vehicles"
        "     OR v1.heavy_vehicle_count IS DISTINCT FROM v2.heavy_vehicles)",
    )[0]
    assert v1_rows == v2_rows > 0 and mismatched == 0
    # Each version ran its own key tests in the build.
    out = built.result.stdout
    for test in ("unique_traffic_counts_v1_count_id", "unique_traffic_counts_v2_count_id"):
        assert test in out, test
    assert "not_null_traffic_counts_v2_vehicles" in out and "not_null_traffic_counts_v1_vehicle_count" in out


def test_marts_agree_with_their_sources(built) -> None:
    (raw, mart) = query(
        built,
        "SELECT (SELECT count(*) FROM raw_public_works.service_requests),"
        " (SELECT count(*) FROM public_works.service_requests)",
    )[0]
    assert raw == mart
    (opened,) = query(built, "SELECT sum(requests_opened) FROM public_works.response_times")[0]
    assert opened == mart
    # Only closed requests have a response time; open ones never do.
    (bad,) = query(
        built,
        "SELECT count(*) FROM public_works.service_requests "
        "WHERE (status = 'closed') <> (response_hours IS NOT NULL) OR is_open <> (closed_at IS NULL)",
    )[0]
    assert bad == 0
    (lo, hi) = query(built, "SELECT min(aqi), max(aqi) FROM environment.air_quality")[0]
    assert 0 <= lo <= hi <= 500


def test_cross_department_scorecard_covers_every_district(built) -> None:
    districts = query(built, "SELECT DISTINCT district FROM city_ops.district_scorecard ORDER BY 1")
    assert [d[0] for d in districts] == [f"D{i}" for i in range(1, 10)]
    (score_lo, score_hi) = query(built, "SELECT min(score), max(score) FROM city_ops.district_scorecard")[0]
    assert 0 <= score_lo <= score_hi <= 100


def test_contract_breach_fails_the_build(built, tmp_path: Path, copy_dbt_project, run_dbt) -> None:
    """A mart whose SQL changes a column type, but not its contract, must not build."""
    project = copy_dbt_project(tmp_path / "transforms")
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copyfile(built.warehouse, warehouse)
    sql = project / "models/environment/marts/air_quality.sql"
    original = "cast(round(aqi_raw) as integer) as aqi"
    assert original in sql.read_text()
    sql.write_text(sql.read_text().replace(original, "cast(round(aqi_raw) as varchar) as aqi"))
    result = run_dbt(project, "build", "--select", "air_quality", warehouse=warehouse)
    assert result.returncode == 1
    assert "contract" in result.stdout.lower() and "aqi" in result.stdout


def test_cross_group_ref_to_private_staging_fails_parse(tmp_path: Path, copy_dbt_project, run_dbt) -> None:
    project = copy_dbt_project(tmp_path / "transforms")
    (project / "models/city_ops/marts/sneaky.sql").write_text(
        "select * from {{ ref('stg_public_works__service_requests') }}\n"
    )
    result = run_dbt(project, "parse")
    assert result.returncode == 2
    assert "private to the 'public_works' group" in result.stdout
