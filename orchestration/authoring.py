"""The data owner's workspace: the dbt project compiled and its models run in scratch, in seconds,
before anything is built or published.

`compile_models` runs `dbt compile` (parse + compile, no build) with dbt's profile pointed at a
scratch file named like the served warehouse (`$CIVICMESH_HOME/authoring/warehouse.duckdb`), so the
compiled SQL names every relation exactly as a build does, while the served warehouse is never
opened: DuckDB has one writer per file (ARCHITECTURE §2), and a build may hold it. Its own target
folder keeps dbt's partial parse between runs; a lock file serialises two owners of one home.

`Scratch` then creates, in an in-memory DuckDB attached under the warehouse's name, every source
and model the given models are built from: sources from their landing files when the home has them
(their real types, as the build's ingest loads them; with rows for a preview, empty for a check),
else as typed empty tables from their yml (`data_type` is required where data enters); models as
views of their compiled SQL (a preview's own model as a table). What DuckDB then says a model
returns is what a build would return, so contracts and column lineage are checked against it
(`lineage.dbt.warehouse_columns`, the same function the build's PII gate uses).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import duckdb

from lineage.dbt import manifest_node, relation_name
from meshcore.settings import Settings
from orchestration.gate import upstream
from orchestration.landing import discover_landing_tables

WORKSPACE = "authoring"
TYPE_TEXT = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*(\(\s*\d+\s*(,\s*\d+\s*)?\))?(\[\])?$")


@dataclass(frozen=True)
class Finding:
    """One problem an owner must fix: where (a file of the dbt project or the policy folder, and a
    1-based line when known), a short code and what to do."""

    file: str
    line: int | None
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}{f':{self.line}' if self.line else ''}: {self.code}: {self.message}"


class CompileFailed(Exception):
    """dbt could not parse or compile the project; `findings` say where."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("; ".join(str(f) for f in findings))
        self.findings = findings


def workspace(settings: Settings) -> Path:
    return settings.home / WORKSPACE


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or its holder dies
        yield


def _dbt_failures(result: Any, project_dir: Path) -> list[Finding]:
    """Findings from a failed dbt invocation: the exception (a parse error names its file), or
    each node that failed to compile."""
    if result.exception is not None:
        text = str(result.exception).strip()
        where = re.search(r"\b((?:models|tests|seeds|snapshots|macros)/[^\s)'\"]+\.(?:sql|yml|yaml))", text)
        return [Finding(where.group(1) if where else str(project_dir), None, "dbt", text)]
    failed = [r for r in getattr(result.result, "results", ()) or () if str(r.status) in ("error", "fail")]
    return [
        Finding(str(r.node.original_file_path), None, "dbt", str(r.message or r.status).strip())
        for r in failed
    ]


def compile_models(settings: Settings, select: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest after `dbt compile` of `select` (dbt selectors; default every model) and every
    model they are built from; raises CompileFailed with dbt's errors."""
    import json

    from dbt.cli.main import dbtRunner

    folder = workspace(settings)
    project = settings.dbt_project_dir
    # dbt runs in this process (no second interpreter start-up), without Dagster's import cost.
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    served = os.environ.get("CIVICMESH_WAREHOUSE")
    os.environ["CIVICMESH_WAREHOUSE"] = str(folder / "warehouse.duckdb")  # named like the served one
    args = ["compile", "--project-dir", str(project), "--profiles-dir", str(project)]
    args += ["--target-path", str(folder / "target"), "--log-path", str(folder / "logs")]
    args += ["--quiet", "--no-print", "--select"]
    args += [f"+{s},resource_type:model" for s in select] if select else ["resource_type:model"]
    try:
        with _locked(folder):
            with open(os.devnull, "w") as quiet, redirect_stdout(quiet):  # dbt prints compiled SQL
                result = dbtRunner().invoke(args)
            if not result.success:
                raise CompileFailed(
                    _dbt_failures(result, project) or [Finding(str(project), None, "dbt", "failed")]
                )
            return json.loads((folder / "target" / "manifest.json").read_text())
    finally:
        if served is None:
            os.environ.pop("CIVICMESH_WAREHOUSE", None)
        else:
            os.environ["CIVICMESH_WAREHOUSE"] = served


def _source_table(node: Mapping[str, Any]) -> str | None:
    """`CREATE TABLE` column list from a source's yml, or None when a column has no usable type."""
    columns = []
    for column in (node.get("columns") or {}).values():
        kind = str(column.get("data_type") or "")
        if not TYPE_TEXT.match(kind):
            return None
        columns.append(f'"{column["name"]}" {kind}')
    return ", ".join(columns) or None


class Scratch:
    """An in-memory DuckDB holding what `targets` are built from (see the module docstring)."""

    def __init__(
        self, manifest: Mapping[str, Any], landing_dir: Path | None = None, rows: bool = True
    ) -> None:
        """`landing_dir`: load sources from their landing files (their real types), with their
        rows or (`rows` False) none; sources without one are typed from their yml."""
        self.manifest = manifest
        self.landing = (
            {t.relation: t.path for t in discover_landing_tables(landing_dir)} if landing_dir else {}
        )
        self.rows = rows
        self.con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "1GB"})
        self.findings: list[Finding] = []
        self._attached: set[str] = set()

    def _schema(self, node: Mapping[str, Any]) -> None:
        database, schema = str(node["database"]), str(node["schema"])
        if database not in self._attached:
            self.con.execute(f"ATTACH ':memory:' AS \"{database}\"")
            self.con.execute(f'USE "{database}"')
            self._attached.add(database)
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"."{schema}"')

    def _create_source(self, uid: str, node: Mapping[str, Any]) -> None:
        landing = self.landing.get(f"{node['schema']}.{node.get('identifier') or node['name']}")
        if landing is not None:
            limit = "" if self.rows else " LIMIT 0"
            self.con.execute(
                f"CREATE TABLE {relation_name(node)} AS SELECT * FROM read_parquet(?){limit}", [str(landing)]
            )
            return
        columns = _source_table(node)
        if columns is None:
            where = str(node.get("original_file_path") or uid)
            self.findings.append(
                Finding(where, None, "source-type", f"{uid}: every column needs a data_type to be checked")
            )
            return
        self.con.execute(f"CREATE TABLE {relation_name(node)} ({columns})")

    def _create_model(self, uid: str, node: Mapping[str, Any], table: bool) -> None:
        if (node.get("config") or {}).get("materialized") == "ephemeral":
            return  # dbt inlines it into its children's SQL
        sql = (node.get("compiled_code") or "").strip().rstrip(";")
        kind = "TABLE" if table else "VIEW"
        try:
            self.con.execute(f"CREATE OR REPLACE {kind} {relation_name(node)} AS\n{sql}")
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            self.findings.append(
                Finding(str(node.get("original_file_path")), None, "sql", f"{uid}: {message}")
            )

    def stage(self, targets: Sequence[str], tables: Sequence[str] = ()) -> None:
        """Create what `targets` are built from, in dependency order, and the targets themselves
        (as views, or as tables for those in `tables`). Problems go to `findings`."""
        needed = set().union(*(upstream(self.manifest, t) for t in targets)) if targets else set()
        graph = {
            uid: [
                p
                for p in (manifest_node(self.manifest, uid) or {}).get("depends_on", {}).get("nodes", ())
                or ()
            ]
            for uid in needed
        }
        for uid in TopologicalSorter(graph).static_order():
            node = manifest_node(self.manifest, uid)
            if node is None:
                continue
            self._schema(node)
            if uid.startswith("source."):
                self._create_source(uid, node)
            elif uid.startswith("model."):
                self._create_model(uid, node, uid in tables)
            else:
                where = str(node.get("original_file_path") or uid)
                self.findings.append(
                    Finding(where, None, "not-staged", f"{uid}: only sources and models run here")
                )

    def canonical_type(self, declared: str) -> str | None:
        """DuckDB's name for a contract `data_type` (`varchar` -> VARCHAR, `int` -> INTEGER), or None
        when it is not a DuckDB type."""
        if not TYPE_TEXT.match(declared.strip()):
            return None
        try:
            row = self.con.execute(f"SELECT typeof(CAST(NULL AS {declared}))").fetchone()
        except duckdb.Error:
            return None
        return str(row[0]) if row else None

    def close(self) -> None:
        self.con.close()
