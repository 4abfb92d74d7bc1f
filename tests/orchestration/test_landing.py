"""Landing files -> raw tables: discovery, safe identifiers, idempotent loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from orchestration.landing import LandingTable, discover_landing_tables, load_into_warehouse, raw_relation

EXPECTED = [
    ("environment", "air_quality"),
    ("finance", "vendor_payments"),
    ("hr", "employees"),
    ("public_works", "service_requests"),
    ("transportation", "collisions"),
    ("transportation", "traffic_counts"),
]


def test_discovers_every_generated_table_sorted(landing_dir: Path) -> None:
    tables = discover_landing_tables(landing_dir)
    assert [(t.department, t.table) for t in tables] == EXPECTED
    assert all(t.path.is_file() for t in tables)


def test_discovery_skips_temp_files_and_unsafe_names(tmp_path: Path, landing_dir: Path) -> None:
    good = tmp_path / "public_works" / "service_requests.parquet"
    good.parent.mkdir()
    shutil.copyfile(landing_dir / "public_works" / "service_requests.parquet", good)
    for junk in (
        "public_works/.service_requests.parquet.abc.tmp",  # a write in progress
        "public_works/Bad-Name.parquet",
        "public_works/notes.csv",
        "Public Works/x.parquet",
        "public_works/nested/deeper.parquet",
        "top_level.parquet",
    ):
        (tmp_path / junk).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / junk).write_bytes(b"x")
    assert discover_landing_tables(tmp_path) == [LandingTable("public_works", "service_requests", good)]
    assert discover_landing_tables(tmp_path / "missing") == []


def test_raw_relation_validates_identifiers() -> None:
    assert raw_relation("public_works", "service_requests") == "raw_public_works.service_requests"
    for department, table in (("public-works", "x"), ("hr", "x; DROP TABLE y"), ("HR", "x"), ("hr", "1x")):
        with pytest.raises(ValueError, match="invalid"):
            raw_relation(department, table)


def test_load_replaces_the_raw_table_and_returns_its_rows(landing_dir: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        for table in discover_landing_tables(landing_dir):
            expected = pq.read_metadata(table.path).num_rows
            assert load_into_warehouse(con, table) == expected
            assert load_into_warehouse(con, table) == expected  # a re-run replaces, never appends
            (count,) = con.execute(f"SELECT count(*) FROM {table.relation}").fetchone()
            assert count == expected
        schemas = {
            r[0] for r in con.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
        }
        assert {f"raw_{d}" for d, _ in EXPECTED} <= schemas


def test_load_refuses_an_unsafe_table_before_touching_the_warehouse(tmp_path: Path) -> None:
    with duckdb.connect() as con:
        with pytest.raises(ValueError):
            load_into_warehouse(
                con, LandingTable("hr", "employees; DROP SCHEMA main", tmp_path / "x.parquet")
            )
        assert con.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'raw_%'"
        ).fetchone() == (0,)
