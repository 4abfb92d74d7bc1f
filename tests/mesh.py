"""Helpers for tests that need a real mesh built through Dagster (see the `built_mesh` fixture)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from civicmesh.catalog import Catalog
from civicmesh.settings import REPO_ROOT, Settings
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
