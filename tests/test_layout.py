"""The repository layout rules of ARCHITECTURE.md §2-§3, checked on the real tree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# room -> top-level packages it must never import
FORBIDDEN_IMPORTS = {
    "graphql/gateway": {"dagster", "dagster_dbt", "orchestration"},
    "graphql/portal": {"dagster", "dagster_dbt", "orchestration"},
    "orchestration": {"gateway", "strawberry"},
    "policies": {"gateway", "orchestration", "dagster", "dagster_dbt", "lineage", "strawberry"},
    "lineage": {"gateway", "orchestration", "policies", "dagster", "dagster_dbt", "strawberry"},
}
CORE_FORBIDDEN = {
    "civicmesh",
    "gateway",
    "portal",
    "orchestration",
    "policies",
    "lineage",
    "dagster",
    "strawberry",
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_graphql_folder_is_not_a_package_and_graphql_core_still_imports() -> None:
    assert not (ROOT / "graphql" / "__init__.py").exists()
    graphql = importlib.import_module("graphql")
    assert "site-packages" in str(graphql.__file__), graphql.__file__
    assert hasattr(graphql, "GraphQLSchema")
    for room in ("gateway", "portal"):
        package = importlib.import_module(room)
        assert Path(package.__file__).parent == ROOT / "graphql" / room


@pytest.mark.parametrize("room", sorted(FORBIDDEN_IMPORTS))
def test_rooms_import_only_what_they_may(room: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        for path in (ROOT / room).rglob("*.py")
        if (bad := _imported_top_levels(path) & FORBIDDEN_IMPORTS[room])
    }
    assert not offenders


def test_core_imports_no_room() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        for path in (ROOT / "meshcore").rglob("*.py")
        if (bad := _imported_top_levels(path) & CORE_FORBIDDEN)
    }
    assert not offenders
