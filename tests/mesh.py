"""Helpers for tests that need a real mesh built through Dagster (see the `built_mesh` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from meshcore.catalog import Catalog
from meshcore.settings import REPO_ROOT, Settings
from meshcore.store import get_engine
from orchestration.build import BuildReport, run_build


@dataclass
class BuiltMesh:
    settings: Settings
    report: BuildReport
    catalog: Catalog
    lines: list[str]


def isolated_settings(home: Path, repo_root: Path = REPO_ROOT) -> Settings:
    return Settings.for_home(home, repo_root=repo_root)


def build(settings: Settings) -> tuple[BuildReport, list[str]]:
    lines: list[str] = []
    return run_build(settings, emit_line=lines.append), lines


def copy_repo_transforms(dest_root: Path) -> Path:
    """A repo root whose transforms/ is a private copy the test may edit."""
    shutil.copytree(
        REPO_ROOT / "transforms",
        dest_root / "transforms",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"),
    )
    return dest_root


def rebuild_copy(built: Settings, dest: Path, repo_root: Path | None = None) -> tuple[Settings, Catalog]:
    """A private copy of a built mesh's home (data, warehouse, catalog, dbt target), to build again,
    optionally from another repo root (`copy_repo_transforms`)."""
    home = dest / "home"
    shutil.copytree(built.home, home, ignore=shutil.ignore_patterns("dagster", "logs"))
    settings = isolated_settings(home, repo_root or built.repo_root)
    return settings, Catalog(get_engine(settings.metadata_url), settings.home)


CIVICMESH = str(Path(sys.executable).parent / "civicmesh")


def home_env(home: Path) -> dict[str, str]:
    """The environment of a user whose CIVICMESH_HOME is `home` (nothing else of civicmesh set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIVICMESH_", "DAGSTER_HOME"))}
    return {**env, "CIVICMESH_HOME": str(home)}


def cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`civicmesh ARGS` as a separate process, the way a user runs it, on `home`."""
    return subprocess.run(
        [CIVICMESH, *args], env=home_env(home), capture_output=True, text=True, timeout=timeout, check=False
    )


def copy_home(home: Path, dest: Path) -> Path:
    """What an operator's `cp -a` does (the build lock aside); the original stays where it is."""
    shutil.copytree(home, dest, symlinks=True, ignore=shutil.ignore_patterns("build.lock"))
    return dest
