"""Landing files -> raw tables: `LANDING/<department>/<table>.parquet` -> `raw_<department>.<table>`.

Pure Python on purpose (no Dagster import): the ingest assets, the sensor and the tests all share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class LandingTable:
    department: str
    table: str
    path: Path

    @property
    def relation(self) -> str:
        return raw_relation(self.department, self.table)


def _check(name: str, what: str) -> str:
    # Identifiers go into SQL text (they cannot be bound), so only plain snake_case passes.
    if not IDENTIFIER.match(name):
        raise ValueError(f"invalid {what} name {name!r}: must match {IDENTIFIER.pattern}")
    return name


def raw_relation(department: str, table: str) -> str:
    return f"raw_{_check(department, 'department')}.{_check(table, 'table')}"


def discover_landing_tables(landing_dir: Path) -> list[LandingTable]:
    """Every `<department>/<table>.parquet` under `landing_dir`, sorted; temp and odd names skipped."""
    if not landing_dir.is_dir():
        return []
    found = [
        LandingTable(path.parent.name, path.stem, path)
        for path in landing_dir.glob("*/*.parquet")
        if path.is_file() and IDENTIFIER.match(path.parent.name) and IDENTIFIER.match(path.stem)
    ]
    return sorted(found, key=lambda t: (t.department, t.table))


def load_into_warehouse(con: duckdb.DuckDBPyConnection, table: LandingTable) -> int:
    """Replace the raw table with the landing file's contents; returns the row count."""
    relation = raw_relation(table.department, table.table)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS raw_{table.department}")
    con.execute(f"CREATE OR REPLACE TABLE {relation} AS SELECT * FROM read_parquet(?)", [str(table.path)])
    row = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
    return int(row[0]) if row else 0
