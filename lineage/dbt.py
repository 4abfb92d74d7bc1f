"""OpenLineage events for a dbt invocation, built from its artifacts (manifest.json + run_results.json).

Shape: one run for the invocation (parent: the orchestrator run), and under it one START +
COMPLETE/FAIL pair per executed model, seed and snapshot, with its refs and sources as inputs, its
relation as output, the contract columns as schema, its tests' results as data-quality assertions,
and column lineage parsed from the compiled SQL with sqlglot. Run ids of the nodes are derived from
the invocation run id, so processing the same artifacts twice gives the same events.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import InputDataset, RunEvent
from openlineage.client.generated import column_lineage_dataset as cl
from openlineage.client.generated import data_quality_assertions_dataset as dq
from openlineage.client.generated.base import DatasetFacet
from openlineage.client.uuid import generate_static_uuid

from lineage import naming
from lineage.facets import PRODUCER
from lineage.naming import DatasetRef, JobRef, ParentRef
from lineage.runs import input_dataset, lifecycle, make_job, output_dataset, schema_facet
from lineage.sql_lineage import column_lineage, output_columns

log = logging.getLogger("civicmesh.lineage")

EXECUTED = ("model.", "seed.", "snapshot.")
STATUS = {"success": "COMPLETE", "error": "FAIL", "pass": "COMPLETE", "fail": "FAIL"}


def manifest_node(manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any] | None:
    return (manifest.get("nodes") or {}).get(unique_id) or (manifest.get("sources") or {}).get(unique_id)


def relation_of(node: Mapping[str, Any], warehouse_path: Path | str) -> DatasetRef:
    """The DuckDB dataset a model/seed/snapshot/source lives in."""
    table = node.get("alias") or node.get("identifier") or node["name"]
    parts = [p for p in (node.get("database"), node.get("schema"), table) if p]
    return naming.duckdb_dataset(warehouse_path, ".".join(parts))


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _timing(result: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    # dbt records compile and execute phases; the run spans from the first start to the last end.
    starts = [_parse_time(t.get("started_at")) for t in result.get("timing") or ()]
    ends = [_parse_time(t.get("completed_at")) for t in result.get("timing") or ()]
    starts_known = [s for s in starts if s]
    ends_known = [e for e in ends if e]
    return (min(starts_known) if starts_known else None, max(ends_known) if ends_known else None)


def _assertions(manifest: Mapping[str, Any], run_results: Mapping[str, Any]) -> dict[str, list[dq.Assertion]]:
    """Test results grouped by the node they test (dbt 1.5+: `attached_node`)."""
    grouped: dict[str, list[dq.Assertion]] = defaultdict(list)
    for result in run_results.get("results") or ():
        uid = result.get("unique_id", "")
        if not uid.startswith("test.") or result.get("status") == "skipped":
            continue
        test = (manifest.get("nodes") or {}).get(uid) or {}
        target = test.get("attached_node") or next(
            (
                p
                for p in (test.get("depends_on") or {}).get("nodes") or ()
                if p.startswith(("model.", "seed.", "snapshot.", "source."))
            ),
            None,
        )
        if not target:
            continue
        meta = test.get("test_metadata") or {}
        kwargs = meta.get("kwargs") or {}
        grouped[target].append(
            dq.Assertion(
                assertion=meta.get("name") or test.get("name") or uid,
                success=result.get("status") == "pass",
                column=test.get("column_name") or kwargs.get("column_name"),
                severity=str((test.get("config") or {}).get("severity") or "error").lower(),
                name=test.get("name"),
                actual=str(result["failures"]) if result.get("failures") is not None else None,
            )
        )
    return grouped


class NodeColumns:
    """Output columns per node: declared in the contract/yml, else inferred from the compiled SQL
    (with `*` expanded from the parents' columns), so `select *` chains still get column lineage."""

    def __init__(self, manifest: Mapping[str, Any]) -> None:
        self.manifest = manifest
        self._cache: dict[str, dict[str, str]] = {}
        self._lineage: dict[tuple[str, str], dict[str, cl.Fields]] = {}

    def lineage(self, uid: str, warehouse_path: Path | str) -> dict[str, cl.Fields]:
        """Column lineage of a model's output columns, parsed once per NodeColumns (sqlglot parses
        the SQL once per column, the costliest step): the build's lineage events and its PII
        check share one instance."""
        key = (uid, str(warehouse_path))
        if key not in self._lineage:
            sql = (manifest_node(self.manifest, uid) or {}).get("compiled_code")
            names = list(self.of(uid))
            self._lineage[key] = (
                column_lineage(sql, names, self.schema(self.parents(uid)), warehouse_path)
                if sql and names
                else {}
            )
        return self._lineage[key]

    def of(self, uid: str, _depth: int = 0) -> dict[str, str]:
        if uid in self._cache:
            return self._cache[uid]
        node = manifest_node(self.manifest, uid) or {}
        declared = {c["name"]: c.get("data_type") or "unknown" for c in (node.get("columns") or {}).values()}
        columns = declared
        sql = node.get("compiled_code")
        if sql and node.get("resource_type") == "model" and _depth < 50:
            inferred = output_columns(sql, self.schema(self.parents(uid), _depth + 1))
            if inferred:
                columns = {name: declared.get(name, "unknown") for name in inferred}
        self._cache[uid] = columns
        return columns

    def parents(self, uid: str) -> list[str]:
        node = manifest_node(self.manifest, uid) or {}
        return [
            p for p in (node.get("depends_on") or {}).get("nodes") or () if manifest_node(self.manifest, p)
        ]

    def schema(self, parents: list[str], _depth: int = 0) -> dict[str, Any]:
        """{database: {schema: {table: {column: type}}}}, the shape sqlglot expects."""
        tree: dict[str, Any] = {}
        for uid in parents:
            node = manifest_node(self.manifest, uid) or {}
            columns = self.of(uid, _depth)
            if not columns:
                continue
            table = node.get("alias") or node.get("identifier") or node["name"]
            database = tree.setdefault(node.get("database") or "", {})
            database.setdefault(node.get("schema") or "main", {})[table] = columns
        return tree


def _column_lineage_facet(
    uid: str, manifest: Mapping[str, Any], columns: NodeColumns, warehouse_path: Path | str
) -> cl.ColumnLineageDatasetFacet | None:
    fields = columns.lineage(uid, warehouse_path)
    if not fields:
        return None
    return cl.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER)


@dataclass(frozen=True)
class _Context:
    manifest: Mapping[str, Any]
    invocation: ParentRef
    warehouse_path: Path | str
    assertions: Mapping[str, list[dq.Assertion]]
    columns: NodeColumns
    project_dir: Path | None


def _output_facets(uid: str, node: Mapping[str, Any], ctx: _Context) -> dict[str, DatasetFacet]:
    facets: dict[str, DatasetFacet] = {}
    declared = node.get("columns") or {}
    # The SQL's own column list when it could be inferred (staging models often declare only the
    # tested columns), with the declared types and descriptions.
    names = list(ctx.columns.of(uid)) or list(declared)
    if names:
        facets["schema"] = schema_facet(
            (
                n,
                (declared.get(n) or {}).get("data_type") or "",
                (declared.get(n) or {}).get("description") or "",
            )
            for n in names
        )
    if uid.startswith("model."):
        lineage_facet = _column_lineage_facet(uid, ctx.manifest, ctx.columns, ctx.warehouse_path)
        if lineage_facet is not None:
            facets["columnLineage"] = lineage_facet
    if ctx.assertions.get(uid):
        # dbt-ol sends tests as separate runs; attaching the results to the model's own output keeps
        # "was this version of the table tested, and did it pass" on one event.
        facets["dataQualityAssertions"] = dq.DataQualityAssertionsDatasetFacet(
            assertions=ctx.assertions[uid], producer=PRODUCER
        )
    return facets


def _job_model_name(node: Mapping[str, Any], uid: str) -> str:
    """Versions of one model are separate jobs (`orders.v1`, `orders.v2`): they write different tables."""
    name = node.get("name") or uid
    return f"{name}.v{node['version']}" if node.get("version") is not None else name


def _model_events(uid: str, result: Mapping[str, Any], ctx: _Context) -> list[RunEvent]:
    node = manifest_node(ctx.manifest, uid) or {}
    inputs: list[InputDataset] = [
        input_dataset(relation_of(manifest_node(ctx.manifest, p) or {}, ctx.warehouse_path))
        for p in ctx.columns.parents(uid)
    ]
    if uid.startswith("seed.") and ctx.project_dir and node.get("original_file_path"):
        inputs.append(input_dataset(naming.file_dataset(ctx.project_dir / node["original_file_path"])))
    rows = (result.get("adapter_response") or {}).get("rows_affected")
    output = output_dataset(
        relation_of(node, ctx.warehouse_path),
        _output_facets(uid, node, ctx),
        row_count=rows if isinstance(rows, int) else None,
    )
    started, ended = _timing(result)
    kind = uid.split(".", 1)[0].upper()
    job = make_job(
        naming.dbt_model_job(node.get("package_name") or "dbt", _job_model_name(node, uid)),
        kind,
        sql=node.get("compiled_code") if kind != "SEED" else None,
    )
    run_id = str(
        generate_static_uuid(started or datetime.now(UTC), f"{ctx.invocation.run_id}:{uid}".encode())
    )
    status = STATUS.get(str(result.get("status")), "FAIL")
    return lifecycle(
        run_id=run_id,
        parent=ctx.invocation,
        job=job,
        inputs=inputs,
        outputs=[output],
        status=status,
        started_at=started,
        ended_at=ended,
        error=result.get("message") if status == "FAIL" else None,
    )


def events_from_dbt_run(
    manifest: Mapping[str, Any],
    run_results: Mapping[str, Any],
    run_id: str,
    parent: ParentRef | None,
    warehouse_path: Path | str,
    *,
    project_dir: Path | None = None,
    job_name: str | None = None,
    columns: NodeColumns | None = None,
) -> list[RunEvent]:
    """Events for one dbt invocation: its own run (`run_id`, child of `parent`) and one run per
    executed node. Skipped nodes produce nothing: they neither read nor wrote. Pass `columns`
    (a NodeColumns of the same manifest) to reuse column lineage already parsed."""
    project = (manifest.get("metadata") or {}).get("project_name") or "dbt"
    command = (run_results.get("args") or {}).get("which") or "build"
    invocation_job = JobRef(job_name or f"dbt.{project}.{command}")
    invocation = ParentRef(
        run_id=run_id,
        job_name=invocation_job.name,
        namespace=invocation_job.namespace,
        root_run_id=(parent.root_run_id or parent.run_id) if parent else None,
        root_job_name=(parent.root_job_name or parent.job_name) if parent else None,
    )
    ctx = _Context(
        manifest=manifest,
        invocation=invocation,
        warehouse_path=warehouse_path,
        assertions=_assertions(manifest, run_results),
        columns=columns if columns is not None else NodeColumns(manifest),
        project_dir=project_dir,
    )
    node_events: list[RunEvent] = []
    starts: list[datetime] = []
    ends: list[datetime] = []
    failed = False
    for result in run_results.get("results") or ():
        uid = result.get("unique_id", "")
        if not uid.startswith(EXECUTED) or result.get("status") == "skipped":
            continue
        started, ended = _timing(result)
        starts += [started] if started else []
        ends += [ended] if ended else []
        failed = failed or STATUS.get(str(result.get("status"))) != "COMPLETE"
        try:
            node_events.extend(_model_events(uid, result, ctx))
        except Exception:  # one odd node must not cost the lineage of the whole build
            log.warning("lineage: could not build events for %s", uid, exc_info=True)
    generated = _parse_time((run_results.get("metadata") or {}).get("generated_at"))
    wrapper = lifecycle(
        run_id=run_id,
        parent=parent,
        job=make_job(invocation_job, "JOB"),
        inputs=[],
        outputs=[],
        status="FAIL" if failed else "COMPLETE",
        started_at=min(starts) if starts else generated,
        ended_at=max(ends) if ends else generated,
        error="one or more dbt nodes failed" if failed else None,
    )
    return [wrapper[0], *node_events, *wrapper[1:]]
