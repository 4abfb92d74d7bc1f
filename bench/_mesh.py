"""Shared set-up for the benchmarks: a throw-away mesh home with generated data."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from meshcore.settings import REPO_ROOT, Settings


def mesh_settings(home: Path) -> Settings:
    return Settings.for_home(home)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def raw_dbt_build(settings: Settings) -> float:
    """`dbt build` alone on an already ingested warehouse: the floor a build cannot beat.

    It shares the build's target folder, so it parses as warm as the orchestrated build did."""
    dbt = Path(sys.executable).parent / "dbt"
    project = REPO_ROOT / "transforms"
    env = {"CIVICMESH_WAREHOUSE": str(settings.warehouse_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    import os

    command = [
        str(dbt),
        "build",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(settings.dbt_target_dir),
        "--log-path",
        str(settings.home / "bench_dbt_logs"),
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started
