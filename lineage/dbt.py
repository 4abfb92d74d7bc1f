"""OpenLineage events for a dbt invocation, built from its artifacts (manifest.json + run_results.json).

Shape: one run for the invocation (parent: the orchestrator run), and under it one START +
COMPLETE/FAIL pair per executed model, seed and snapshot, with its refs and sources as inputs, its
relation as output, its columns as schema, its tests' results as data-quality assertions, and the
column lineage of `lineage.sql_lineage` (exact against the warehouse, unknown columns left out).
Run ids of the nodes are derived from the invocation run id, so processing the same artifacts twice
gives the same events.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from openlineage.client.event_v2 import InputDataset, RunEvent
from openlineage.client.generated import column_lineage_dataset as cl
from openlineage.client.generated import data_quality_assertions_dataset as dq
from openlineage.client.generated.base import DatasetFacet
from openlineage.client.uuid import generate_static_uuid

from lineage import naming
from lineage.facets import PRODUCER
from lineage.naming import DatasetRef, JobRef, ParentRef
from lineage.runs import input_dataset, lifecycle, make_job, output_dataset, schema_facet
from lineage.sql_lineage import ModelLineage, SourceField, model_lineage

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


def relation_name(node: Mapping[str, Any]) -> str:
    """The SQL name of a node's relation: dbt's `relation_name`, else `"database"."schema"."table"`
    (the alias, identifier or name), quoted as dbt quotes it on DuckDB."""
    name = node.get("relation_name")
    if name:
        return str(name)
    table = node.get("alias") or node.get("identifier") or node["name"]
    parts = (node.get("database"), node.get("schema"), table)
    return ".".join('"' + str(part).replace('"', '""') + '"' for part in parts if part)


def relation_key(node: Mapping[str, Any]) -> str:
    """`database.schema.table` of a node, lower-case: how `sql_lineage` names relations."""
    table = node.get("alias") or node.get("identifier") or node["name"]
    return ".".join(str(p) for p in (node.get("database"), node.get("schema"), table)).lower()


def hooks(node: Mapping[str, Any]) -> list[str]:
    """The SQL of a node's `pre-hook`s and `post-hook`s (dbt config), which may change its relation."""
    config = node.get("config") or {}
    found = [h for key in ("pre-hook", "post-hook") for h in config.get(key) or ()]
    return [str(h.get("sql") if isinstance(h, Mapping) else h) for h in found]


def snapshot_meta_columns(node: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """{dbt column a snapshot adds (lower-case): the snapshot's own columns it is computed from}.

    dbt (snapshot strategies, 1.9+ `snapshot_meta_column_names`): `dbt_scd_id` is a hash of
    `unique_key` and the update time; `dbt_updated_at`, `dbt_valid_from` and `dbt_valid_to` are the
    `updated_at` column (timestamp strategy) or the run's clock (check strategy); `dbt_is_deleted`
    is a flag. Empty for any other node."""
    if node.get("resource_type") != "snapshot":
        return {}
    config = node.get("config") or {}
    key = config.get("unique_key") or ()
    keys = (key,) if isinstance(key, str) else tuple(key)
    updated = (
        (config["updated_at"],) if config.get("strategy") == "timestamp" and config.get("updated_at") else ()
    )
    computed = {
        "dbt_scd_id": keys + updated,
        "dbt_updated_at": updated,
        "dbt_valid_from": updated,
        "dbt_valid_to": updated,
        "dbt_is_deleted": (),
    }
    names = {
        **{k: k for k in computed},
        **{k: v for k, v in (config.get("snapshot_meta_column_names") or {}).items() if v},
    }
    return {names[k].lower(): inputs for k, inputs in computed.items()}


def fill_compiled_code(manifest: dict[str, Any], target_path: Path) -> dict[str, Any]:
    """Give every model the compiled SQL dbt last wrote for it under `target_path`, where this
    invocation did not compile it (a subset build, a skipped model): that is the SQL its relation in
    the warehouse was built from, and `warehouse_columns` checks it against DuckDB all the same."""
    for uid, node in (manifest.get("nodes") or {}).items():
        if not uid.startswith("model.") or node.get("compiled_code"):
            continue
        path = target_path / "compiled" / str(node.get("package_name")) / str(node.get("original_file_path"))
        if path.is_file():
            node["compiled_code"] = path.read_text()
    return manifest


def warehouse_columns(
    con: duckdb.DuckDBPyConnection, manifest: Mapping[str, Any]
) -> dict[str, tuple[tuple[str, str], ...]]:
    """{unique_id: ((column, DuckDB type), ...)} as DuckDB itself has them after a build.

    A model is described from its compiled SQL wrapped in a subquery, so the names are the ones a
    reader of the model sees (duplicates renamed `x_1`, ...) in the SQL's own order; a source, seed
    or snapshot from its relation. A node DuckDB cannot describe (not built, invalid SQL) is left
    out: its column lineage is then unknown."""
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for kind in ("nodes", "sources"):
        for uid, node in (manifest.get(kind) or {}).items():
            if uid.startswith("model."):
                sql = (node.get("compiled_code") or "").strip().rstrip(";")
                query = f"DESCRIBE SELECT * FROM (\n{sql}\n) AS model" if sql else None
            elif uid.startswith(("seed.", "snapshot.", "source.")):
                query = f"DESCRIBE {relation_name(node)}"
            else:
                continue
            try:
                rows = con.execute(query).fetchall() if query else []
            except duckdb.Error as exc:
                log.info("lineage: DuckDB cannot describe %s: %s", uid, str(exc).splitlines()[0])
                continue
            if rows:
                found[uid] = tuple((str(r[0]), str(r[1])) for r in rows)
    return found


class NodeColumns:
    """Output columns and column lineage per dbt node, from the manifest and the warehouse.

    `warehouse` ({unique_id: ((name, type), ...)}, see `warehouse_columns`) is DuckDB's answer for
    what each node returns; lineage is exact only against it. Without it a model's lineage is
    unknown and its columns are the ones its yml declares."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        warehouse: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.manifest = manifest
        self.warehouse = warehouse or {}
        self._lineage: dict[str, ModelLineage] = {}

    def lineage(self, uid: str) -> ModelLineage:
        """Column lineage of a model's (or snapshot's SQL's) output columns (parsed once, shared by
        the PII gate and the lineage events)."""
        if uid not in self._lineage:
            node = manifest_node(self.manifest, uid) or {}
            relations = {
                relation_key(manifest_node(self.manifest, p) or {}): [c for c, _ in self.warehouse[p]]
                for p in self.inputs(uid)
                if p in self.warehouse
            }
            output = [c for c, _ in self.warehouse[uid]] if uid in self.warehouse else None
            added = snapshot_meta_columns(node)  # a snapshot's SQL returns its columns, dbt adds these
            output = [c for c in output if c.lower() not in added] if output is not None else None
            lineage = model_lineage(node.get("compiled_code") or "", relations, output)
            if hooks(node):  # `update {{ this }} set note = <an e-mail>` after the SELECT
                why = (
                    f"{len(hooks(node))} dbt hook(s) run SQL on it besides its SELECT; hooks are not followed"
                )
                lineage = ModelLineage(tuple(replace(c, inputs=(), unknown=why) for c in lineage.columns))
            self._lineage[uid] = lineage
        return self._lineage[uid]

    def of(self, uid: str) -> dict[str, str]:
        """{column: type}: DuckDB's columns with the declared types, else the declared columns."""
        node = manifest_node(self.manifest, uid) or {}
        declared = {c["name"].lower(): c.get("data_type") for c in (node.get("columns") or {}).values()}
        if uid in self.warehouse:
            return {name: declared.get(name.lower()) or kind.lower() for name, kind in self.warehouse[uid]}
        return {c["name"]: c.get("data_type") or "unknown" for c in (node.get("columns") or {}).values()}

    def parents(self, uid: str) -> list[str]:
        node = manifest_node(self.manifest, uid) or {}
        return [
            p for p in (node.get("depends_on") or {}).get("nodes") or () if manifest_node(self.manifest, p)
        ]

    def inputs(self, uid: str) -> list[str]:
        """The relations a model's compiled SQL reads: its parents, with an ephemeral parent replaced
        by that parent's own inputs (dbt inlines it as a CTE)."""
        found: list[str] = []
        for parent in self.parents(uid):
            node = manifest_node(self.manifest, parent) or {}
            if (node.get("config") or {}).get("materialized") == "ephemeral":
                found += self.inputs(parent)
            else:
                found.append(parent)
        return list(dict.fromkeys(found))


def _input_field(field: SourceField, warehouse_path: Path | str) -> cl.InputField:
    dataset = naming.duckdb_dataset(warehouse_path, field.relation)
    transformation = cl.Transformation(
        type=field.type, subtype=field.subtype, description=field.description, masking=field.masking
    )
    return cl.InputField(
        namespace=dataset.namespace, name=dataset.name, field=field.column, transformations=[transformation]
    )


def _column_lineage_facet(
    uid: str, columns: NodeColumns, warehouse_path: Path | str
) -> cl.ColumnLineageDatasetFacet | None:
    """The OpenLineage facet of the columns whose lineage is known (unknown ones are left out)."""
    lineage = columns.lineage(uid)
    fields = {}
    for column in lineage.columns:
        if column.unknown is not None or not column.inputs:
            continue
        direct = column.direct
        fields[column.name] = cl.Fields(
            inputFields=[_input_field(f, warehouse_path) for f in column.inputs],
            transformationDescription=next((f.description for f in direct if f.description), None),
            transformationType="MASKED"
            if any(f.masking for f in direct)
            else ("IDENTITY" if direct and all(f.subtype == "IDENTITY" for f in direct) else None),
        )
    if not fields:
        return None
    dataset = [_input_field(f, warehouse_path) for f in lineage.dataset]
    return cl.ColumnLineageDatasetFacet(fields=fields, dataset=dataset, producer=PRODUCER)


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
    declared = {name.lower(): c for name, c in (node.get("columns") or {}).items()}
    # DuckDB's column list when known (staging models often declare only the tested columns), with
    # the declared types and descriptions.
    columns = ctx.columns.of(uid)
    if columns:
        facets["schema"] = schema_facet(
            (n, kind or "", (declared.get(n.lower()) or {}).get("description") or "")
            for n, kind in columns.items()
        )
    if uid.startswith("model."):
        lineage_facet = _column_lineage_facet(uid, ctx.columns, ctx.warehouse_path)
        if lineage_facet is not None:
            facets["columnLineage"] = lineage_facet
    if ctx.assertions.get(uid):
        # dbt-ol sends tests as separate runs; attaching the results to the model's own output keeps
        # "was this version of the table tested, and did it pass" on one event.
        facets["dataQualityAssertions"] = dq.DataQualityAssertionsDatasetFacet(  # type: ignore[assignment]  # OpenLineage types facet dicts invariantly
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


def _invocation(
    manifest: Mapping[str, Any],
    run_results: Mapping[str, Any],
    run_id: str,
    parent: ParentRef | None,
    job_name: str | None,
) -> tuple[JobRef, ParentRef]:
    """The dbt invocation's job (`dbt.<project>.<command>` unless named) and its run as the parent
    of every node's run, under the same root as `parent`."""
    project = (manifest.get("metadata") or {}).get("project_name") or "dbt"
    command = (run_results.get("args") or {}).get("which") or "build"
    job = JobRef(job_name or f"dbt.{project}.{command}")
    return job, ParentRef(
        run_id=run_id,
        job_name=job.name,
        namespace=job.namespace,
        root_run_id=(parent.root_run_id or parent.run_id) if parent else None,
        root_job_name=(parent.root_job_name or parent.job_name) if parent else None,
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
    invocation_job, invocation = _invocation(manifest, run_results, run_id, parent, job_name)
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
