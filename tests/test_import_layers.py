"""The layer and no-cycle contracts (pyproject `[tool.importlinter]`, run by `make test`) hold on
the real tree, and fail on a copy of it with one upward import or one hidden cycle added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "meshcore",
    "civicmesh",
    "policies",
    "lineage",
    "orchestration",
    "graphql/gateway",
    "graphql/portal",
)
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy's packages first on the path, before the editable install's finder (the real tree).
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'graphql'}"}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    return tmp_path


def _add_line(path: Path, line: str) -> None:
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_an_upward_import_from_the_core_breaks_the_layers(tree: Path) -> None:
    _add_line(tree / "meshcore" / "products.py", "from policies.names import check_name  # upward")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "meshcore is not allowed to import policies" in result.stdout
    assert "meshcore.products -> policies.names" in result.stdout


def test_a_room_importing_its_sibling_breaks_the_layers(tree: Path) -> None:
    _add_line(tree / "graphql" / "gateway" / "naming.py", "import orchestration.gate  # sideways")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "gateway is not allowed to import orchestration" in result.stdout


def test_a_cycle_hidden_behind_type_checking_still_counts(tree: Path) -> None:
    _add_line(
        tree / "policies" / "names.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from policies.engine import PolicyEngine",
    )
    result = _lint(tree)
    assert result.returncode == 1, result.stdout
    assert "No cycles are allowed in policies." in result.stdout
