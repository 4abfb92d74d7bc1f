"""The dbt project as Dagster sees it, with its artifacts kept under the data folder."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from meshcore.settings import Settings


def configure_dbt_environment(settings: Settings) -> None:
    """dbt reads its warehouse path and log folder from the environment (see transforms/profiles.yml)."""
    os.environ["CIVICMESH_WAREHOUSE"] = str(settings.warehouse_path)
    # dagster-dbt runs `dbt` from PATH; use the one installed beside this interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("DBT_LOG_PATH", str(settings.home / "dbt_logs"))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")


def dbt_project(settings: Settings) -> DbtProject:
    configure_dbt_environment(settings)
    return DbtProject(
        project_dir=settings.dbt_project_dir,
        target_path=settings.dbt_target_dir,
        profiles_dir=settings.dbt_project_dir,
    )


BUILD_STATE = {"target", "logs", "dbt_packages", ".git"}


def _newest_source_mtime(project_dir: Path) -> float:
    """Newest change anywhere in the project (models, tests, seeds, snapshots, macros, analyses,
    yml), folders too: deleting or renaming a file changes only its folder's mtime. dbt's own
    output folders and hidden files (dbt's `.user.yml`) are left out."""
    newest = 0.0
    for folder, subfolders, files in os.walk(project_dir):
        subfolders[:] = [d for d in subfolders if d not in BUILD_STATE and not d.startswith(".")]
        for name in (*subfolders, *files):
            if not name.startswith("."):
                newest = max(newest, (Path(folder) / name).stat().st_mtime)
    return newest


def ensure_manifest(project: DbtProject, force: bool = False) -> Path:
    """Parse the dbt project when the manifest is missing or older than the project files."""
    manifest = project.manifest_path
    stale = not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project.project_dir)
    if force or stale:
        project.preparer.prepare(project)
    return manifest


class MeshDbtCliResource(DbtCliResource):
    """`DbtCliResource` without two start-up costs it pays on every build before dbt starts.

    - It asks `dbt --version` which dbt it runs: a second dbt process that also looks up the
      latest release on PyPI over the network (~3 s, longer when the network is slow). The `dbt`
      it runs is the one installed beside this interpreter (`configure_dbt_environment`), so
      its version is this environment's dbt-core.
    - It imports dbt Core into this process, loads the profile and opens an adapter (~1-4 s),
      used only by `fetch_row_counts()` and `fetch_column_metadata()`. civicmesh calls neither:
      row counts come from the published snapshots, column lineage from the compiled SQL.

    dbt itself still runs as a subprocess with the same arguments as before.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_resource(project: DbtProject) -> DbtCliResource:
    return MeshDbtCliResource(project_dir=project)  # type: ignore[arg-type]  # DbtCliResource takes a DbtProject (dagster-dbt docs)
