"""`civicmesh product new DEPARTMENT NAME [--from MODEL]`: a new product's SQL and yml, written in
the department's `marts/` folder the way transforms/README.md describes, from what its upstream
relation really returns.

- Upstream: `--from` names a model (`stg_<department>__<entity>` or another product) or a source
  table (`<source_name>.<table>`); without it, the department's `stg_<department>__<NAME>`, else
  its source table NAME. From a source, a staging model `stg_<department>__<table>` is written too
  (typing and tidying go there), and the product reads it.
- Contract: every column the upstream relation returns, with the type DuckDB gives it in a scratch
  database (`orchestration.authoring`), and the upstream yml's description.
- PII: each column is traced with the PII gate's own lineage (`lineage.classification.PiiGraph`);
  a column derived from personal data gets the `pii` tag and the mask declared where the data
  entered, a column whose lineage is unknown is masked `redact` until its owner decides.
- Key and scope: the upstream product's key, else the first `*_id` column; the scope column is a
  column users.yaml scopes readers by (`district`).
- Description: `meshcore.products.PLACEHOLDER`, which the spec loader refuses until it is edited.
`access`, `contract`, `group` and `materialized` come from the folder config in dbt_project.yml and
are not repeated. Existing files are never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineage.classification import PiiGraph
from lineage.dbt import NodeColumns, manifest_node, warehouse_columns
from meshcore.products import (
    CLASSIFICATIONS,
    NAME_PATTERN,
    PLACEHOLDER,
    column_classification,
    is_product_node,
)
from meshcore.settings import Settings
from orchestration.authoring import Scratch, compile_models
from orchestration.gate import (
    boundary_message,
    classification_of,
    department_of,
    input_products,
    open_product,
)


class ScaffoldError(ValueError):
    """The product cannot be scaffolded as asked; nothing was written."""


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    description: str
    mask: str | None = None
    note: str | None = None  # why it is masked, when lineage is unknown


@dataclass(frozen=True)
class Upstream:
    uid: str
    ref: str  # how the product's SQL reads it: a model name
    staging: tuple[str, str] | None = None  # (file stem, SQL) of a staging model to write first


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _find_upstream(manifest: Mapping[str, Any], department: str, name: str, source: str | None) -> str:
    """The unique id of the relation to build from (see the module docstring)."""
    nodes, sources = manifest.get("nodes") or {}, manifest.get("sources") or {}
    wanted = [source] if source else [f"stg_{department}__{name}", name]
    for want in wanted:
        models = [u for u, n in nodes.items() if u.startswith("model.") and n["name"] == want]
        tables = [u for u, n in sources.items() if f"{n['source_name']}.{n['name']}" == want]
        if not source and not models:  # without --from: the department's own source table NAME
            tables = [u for u, n in sources.items() if n["name"] == want and n["fqn"][1:2] == [department]]
        if models or tables:
            return (models or tables)[0]
    staging = sorted(n["name"] for n in nodes.values() if n["name"].startswith(f"stg_{department}__"))
    tables = sorted(
        f"{n['source_name']}.{n['name']}" for n in sources.values() if n["fqn"][1:2] == [department]
    )
    raise ScaffoldError(
        f"nothing to build {department}.{name} from: pass --from with one of "
        f"{', '.join(staging + tables) or '(no staging model or source in ' + department + ')'}"
    )


def _mask(graph: PiiGraph, uid: str, column: str) -> tuple[str | None, str | None]:
    """(mask, note) for a column of `uid`: the mask declared where the data entered, `redact` with
    a note when the lineage is unknown, (None, None) when it is not personal data."""
    if uid.startswith("source."):
        declared = column_classification(_yml_column(graph.manifest, uid, column))
        return ((declared.mask or "redact") if declared.pii else None), None
    trace = graph.trace((uid, column))
    if trace.pii:
        return column_classification(_yml_column(graph.manifest, *trace.pii[-1])).mask or "redact", None
    if trace.unknown:
        return "redact", f"lineage unknown ({trace.reason}): masked until you decide"
    return None, None


def upstream_columns(settings: Settings, manifest: Mapping[str, Any], uid: str) -> list[Column]:
    """What `uid` returns (DuckDB's types in scratch), each with its description and PII mask."""
    scratch = Scratch(manifest, settings.landing_dir, rows=False)
    try:
        scratch.stage([uid])
        if scratch.findings:
            raise ScaffoldError("; ".join(str(f) for f in scratch.findings))
        returned = warehouse_columns(scratch.con, manifest)
    finally:
        scratch.close()
    if uid not in returned:
        raise ScaffoldError(f"DuckDB could not describe {uid}")
    graph = PiiGraph(manifest, NodeColumns(manifest, returned))
    columns = []
    for name, kind in returned[uid]:
        mask, note = _mask(graph, uid, name)
        columns.append(Column(name, kind.lower(), _description(graph, (uid, name)), mask, note))
    return columns


def _yml_column(manifest: Mapping[str, Any], uid: str, column: str) -> Mapping[str, Any]:
    """What the node's yml declares for `column` (DuckDB matches names case-insensitively)."""
    declared = (manifest_node(manifest, uid) or {}).get("columns") or {}
    return next((c for c in declared.values() if c["name"].lower() == column.lower()), {})


def _description(graph: PiiGraph, step: tuple[str, str]) -> str:
    """The column's yml description, else the one of the single column it is computed from
    (followed upstream: a staging model rarely repeats the source's descriptions)."""
    for _ in range(10):  # a chain of renames, never a cycle
        own = _yml_column(graph.manifest, *step)
        if own.get("description"):
            return str(own["description"])
        parents, _ = graph.inputs(step) if not step[0].startswith("source.") else ([], None)
        if len(parents) != 1:
            return ""
        step = parents[0]
    return ""


def _key(manifest: Mapping[str, Any], uid: str, columns: Sequence[Column]) -> str | None:
    meta = ((manifest_node(manifest, uid) or {}).get("config") or {}).get("meta") or {}
    key = (meta.get("civicmesh") or {}).get("key")
    if key in {c.name for c in columns}:
        return str(key)
    return next((c.name for c in columns if c.name.endswith("_id")), None)


def _strictest(manifest: Mapping[str, Any], uid: str) -> str:
    """The strictest classification of the products `uid` is (or is built from); `internal` when
    none: a product is never proposed below what it reads (`orchestration.gate.stricter_inputs`)."""
    node = manifest_node(manifest, uid) or {}
    products = [uid] if is_product_node(node) else input_products(manifest, uid)
    found = [classification_of(manifest_node(manifest, p) or {}) for p in products]
    return max(["internal", *(c for c in found if c in CLASSIFICATIONS)], key=CLASSIFICATIONS.index)


def mart_yml(
    name: str, columns: Sequence[Column], key: str | None, scope: str | None, classification: str = "internal"
) -> str:
    placeholder = f"{PLACEHOLDER} what one row of {name} is, what it is for, and why its classification."
    lines = [
        "models:",
        f"  - name: {name}",
        f"    description: {_quote(placeholder)}",
        "    config:",
        "      meta:",
        "        civicmesh:",
        f"          classification: {classification}  # public | internal | confidential | restricted",
    ]
    lines += [f"          key: {key}"] if key else ["          # key: <the column that identifies a row>"]
    lines += [f"          scope_column: {scope}"] if scope else []
    lines += ["          freshness_sla_hours: 24", "    columns:"]
    for c in columns:
        lines += [f"      - name: {c.name}", f"        data_type: {c.data_type}"]
        lines += [f"        description: {_quote(c.description)}"] if c.description else []
        if c.name == key:
            lines += ["        constraints: [{type: not_null}]", "        data_tests: [unique, not_null]"]
        if c.mask:
            lines += ["        config:", "          tags: [pii]", f"          meta: {{mask: {c.mask}}}"]
            lines += [f"          # {c.note}"] if c.note else []
    return "\n".join(lines) + "\n"


def mart_sql(department: str, name: str, ref: str, columns: Sequence[Column]) -> str:
    select = ",\n".join(f"    {c.name}" for c in columns)
    return (
        f"-- {department}.{name}: one row per ... (say what a row is and which rows are kept).\n"
        f"with upstream as (\n    select * from {{{{ ref('{ref}') }}}}\n)\n\n"
        f"select\n{select}\nfrom upstream\n"
    )


def staging_files(department: str, source: Mapping[str, Any]) -> tuple[str, str, str]:
    """(model name, SQL, yml) of the staging model of one source table."""
    model = f"stg_{department}__{source['name']}"
    names = [c["name"] for c in (source.get("columns") or {}).values()] or ["*"]
    select = ",\n".join(f"        {n}" for n in names)
    reads = f"{{{{ source('{source['source_name']}', '{source['name']}') }}}}"
    sql = (
        f"-- Typed and tidied {source['name']}; the only model that reads the raw table.\n"
        f"with source as (\n    select * from {reads}\n),\n\n"
        f"renamed as (\n    select\n{select}\n    from source\n)\n\nselect * from renamed\n"
    )
    about = _quote(f"{source['name']}, typed and tidied. Private to {department}.")
    yml = f"models:\n  - name: {model}\n    description: {about}\n"
    return model, sql, yml


def scaffold(
    settings: Settings, department: str, name: str, source: str | None, scopes: Sequence[str]
) -> list[Path]:
    """Write the product's files (and a staging model when built from a source); returns them.
    `scopes`: the column names users.yaml scopes readers by."""
    for what, value in (("department", department), ("product", name)):
        if not NAME_PATTERN.match(value):
            raise ScaffoldError(f"{what} {value!r} is not snake_case")
    folder = settings.dbt_project_dir / "models" / department
    if not folder.is_dir():
        raise ScaffoldError(
            f"no department folder {folder} (add the department to dbt_project.yml and groups.yml)"
        )
    marts = folder / "marts"
    targets = [marts / f"{name}.sql", marts / f"{name}.yml"]
    if any(p.exists() for p in targets):
        raise ScaffoldError(f"{targets[0]} or its yml exists already: edit it instead")
    manifest = compile_models(settings)
    uid = _find_upstream(manifest, department, name, source)
    upstream_node = manifest_node(manifest, uid) or {}
    if department_of(upstream_node) not in (department, "") and not open_product(upstream_node):
        raise ScaffoldError(f"{department}.{name} {boundary_message(manifest, uid, department)}")
    columns = upstream_columns(settings, manifest, uid)
    written: list[Path] = []
    ref = (manifest_node(manifest, uid) or {}).get("name", "")
    if uid.startswith("source."):
        ref, sql, yml = staging_files(department, manifest_node(manifest, uid) or {})
        stg = folder / "staging" / ref
        if not stg.with_suffix(".sql").exists():
            written += _write({stg.with_suffix(".sql"): sql, stg.with_suffix(".yml"): yml})
    classification = _strictest(manifest, uid)
    scope = next((c.name for c in columns if c.name in scopes), None)
    key = _key(manifest, uid, columns)
    written += _write(
        {
            targets[0]: mart_sql(department, name, ref, columns),
            targets[1]: mart_yml(name, columns, key, scope, classification),
        }
    )
    return written


def _write(files: Mapping[Path, str]) -> list[Path]:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
