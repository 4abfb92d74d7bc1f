"""Shape rules the review asked for, checked on the real tree: no function over 60 lines outside
tests, and configuration read from the environment only by `meshcore.settings`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.test_import_layers import PACKAGES, ROOT

MAX_LINES = 60
SETTINGS = ROOT / "meshcore" / "settings.py"


def _sources() -> list[Path]:
    return sorted(
        p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "node_modules" not in p.parts
    )


def long_functions(path: Path, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function or method in `path` longer than `limit` lines,
    counted from its `def` (decorators excluded) to its last line, docstring included."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                lines = (child.end_lineno or child.lineno) - child.lineno + 1
                if lines > limit:
                    found.append((name, lines))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    def source(lines: int) -> str:
        body = "\n".join(f"        x{i} = {i}" for i in range(lines - 1))  # plus the `def` line
        return f"class A:\n    def short(self):\n        return 1\n\n    def long(self):\n{body}\n"

    path = tmp_path / "long.py"
    path.write_text(source(MAX_LINES))
    assert long_functions(path) == []
    path.write_text(source(MAX_LINES + 1))
    assert long_functions(path) == [("A.long", MAX_LINES + 1)]


def test_no_function_is_longer_than_60_lines() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name} ({lines} lines)"
        for path in _sources()
        for name, lines in long_functions(path)
    ]
    assert not offenders, "\n".join(offenders)


# A read of the environment: .get, getenv, a subscript that is not assigned to, a membership test.
ENV_READ = re.compile(r"os\.environ\.get\(|\bgetenv\(|os\.environ\[[^\]]*\](?!\s*=[^=])|\bin os\.environ\b")
# Not configuration: the environment handed to child processes, restored as it was found.
NOT_CONFIGURATION = {
    ("orchestration/buildlock.py", "previous_env = os.environ.get(BUILD_RUN_ENV)"),
    ("orchestration/project.py", 'if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):'),
    ("orchestration/project.py", 'os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")'),
    ("orchestration/authoring.py", 'served = os.environ.get("CIVICMESH_WAREHOUSE")'),  # dbt in-process
}


def test_the_environment_is_read_only_by_settings() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        if path != SETTINGS
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ENV_READ.search(line) and (str(path.relative_to(ROOT)), line.strip()) not in NOT_CONFIGURATION
    ]
    assert not offenders, "\n".join(offenders)


def test_the_environment_check_sees_every_form_of_read() -> None:
    reads = ['os.environ.get("X")', 'os.getenv("X")', 'x = os.environ["X"]', '"X" in os.environ']
    writes = ['os.environ["X"] = "1"', 'os.environ.setdefault("X", "1")', 'os.environ.pop("X", None)']
    assert [bool(ENV_READ.search(r)) for r in reads] == [True] * 4
    assert [bool(ENV_READ.search(w)) for w in writes] == [False] * 3
