"""One real `dbt build` per test session, on generated landing data, in a tmp copy of the project."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from orchestration.landing import discover_landing_tables, load_into_warehouse


@dataclass(frozen=True)
class Built:
    project: Path
    warehouse: Path
    result: subprocess.CompletedProcess[str]

    @property
    def manifest(self) -> Path:
        return self.project / "target" / "manifest.json"


def load_raw(landing_dir: Path, warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        for table in discover_landing_tables(landing_dir):
            load_into_warehouse(con, table)


@pytest.fixture(scope="session")
def built(landing_dir: Path, tmp_path_factory: pytest.TempPathFactory, copy_dbt_project, run_dbt) -> Built:
    root = tmp_path_factory.mktemp("dbt_build")
    project = copy_dbt_project(root / "transforms")
    warehouse = root / "warehouse.duckdb"
    load_raw(landing_dir, warehouse)
    result = run_dbt(project, "build", warehouse=warehouse)
    return Built(project, warehouse, result)
