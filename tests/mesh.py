"""Helpers for tests that need a real mesh built through Dagster (see the `built_mesh` fixture)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from civicmesh.catalog import Catalog
from civicmesh.settings import REPO_ROOT, Settings
from civicmesh.store import get_engine
from orchestration.build import BuildReport, run_build


@dataclass
class BuiltMesh:
    settings: Settings
    report: BuildReport
    catalog: Catalog
    lines: list[str]


def isolated_settings(home: Path, repo_root: Path = REPO_ROOT) -> Settings:
    return Settings(home=home, metadata_url=f"sqlite:///{home / 'metadata.db'}", repo_root=repo_root)


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
    return settings, Catalog(get_engine(settings.metadata_url))
