"""`civicmesh product check`: every problem of some products at once, each with its file and line,
from a dbt compile and a scratch database (`orchestration.authoring`), without a build.

What is checked, by the same code that decides at build and reload time:
- the spec (`meshcore.products.collect_spec`: every field, not the first bad one);
- the contract against what the compiled SQL returns in scratch: a declared column the SQL does not
  return, a returned column the contract lacks, a `data_type` that differs (as DuckDB names types);
- the PII gate's dry run (`lineage.classification.pii_findings`, with the column path);
- a column computed from a scope column under another name (`district as ward`), by the same lineage;
- a name the catalog has retired (a build refuses to publish it);
- another department's data read other than through its products (`orchestration.gate.foreign_inputs`),
  a product built from a more strictly classified one (`stricter_inputs`);
- the policy lint with these products (`policies.lint.lint_texts`: an undeclared scope column, a
  department without an owner, ...).
Policy impact (who gains which right on each product, against its published spec) is reported
beside the findings; it is information, not a finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lineage.classification import Column, PiiGraph, pii_findings
from lineage.dbt import NodeColumns, warehouse_columns
from meshcore.products import ProductSpec, ProductSpecError, collect_spec, duplicate_names, is_product_node
from meshcore.settings import Settings
from orchestration.authoring import CompileFailed, Finding, Scratch, compile_models
from orchestration.gate import boundary_message, downgrade_message, foreign_inputs, stricter_inputs
from orchestration.yml_lines import field_line
from policies.directory import parse_directory
from policies.lint import USERS_FILE, lint_texts, read_texts
from policies.names import PolicyError


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    specs: list[ProductSpec] = field(default_factory=list)  # the checked products, as their yml says

    @property
    def ok(self) -> bool:
        return not self.findings


def product_nodes(manifest: Mapping[str, Any], names: Sequence[str]) -> list[Mapping[str, Any]]:
    """The product nodes named (`department.product` or the model name); every product when none.
    Raises LookupError naming a name that is no product."""
    nodes = [n for n in manifest["nodes"].values() if is_product_node(n)]
    if not names:
        return nodes
    chosen = []
    for name in names:
        found = [n for n in nodes if name in (n["name"], f"{n.get('group')}.{n['name']}")]
        if not found:
            raise LookupError(f"no product {name!r} in the dbt project (a public model with meta.civicmesh)")
        chosen += found
    return chosen


class Locator:
    """Findings in the project's files, with lines."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    def at(self, source: str, where: str, code: str, message: str) -> Finding:
        path = self.project_dir / source
        return Finding(str(path), field_line(path, where), code, message)

    def spec(self, problem: ProductSpecError) -> Finding:
        return self.at(problem.source, problem.field, "spec", problem.detail)


def contract_findings(
    scratch: Scratch, node: Mapping[str, Any], returned: Sequence[tuple[str, str]] | None, locate: Locator
) -> list[Finding]:
    """The contract of one model against what its SQL returns in scratch."""
    source, model = str(node.get("patch_path") or "").split("://", 1)[-1], node["name"]
    if returned is None:
        return []  # the SQL did not run: a `sql` finding says why
    actual = {name.lower(): kind for name, kind in returned}
    found = []
    for column in (node.get("columns") or {}).values():
        name, declared = column["name"], str(column.get("data_type") or "")
        where = f"models.{model}.columns.{name}"
        if name.lower() not in actual:
            found.append(
                locate.at(source, where, "contract", f"{name}: declared, but the SQL does not return it")
            )
        elif declared:
            canonical = scratch.canonical_type(declared)
            if canonical is None:
                found.append(
                    locate.at(source, f"{where}.data_type", "contract", f"{declared!r} is no DuckDB type")
                )
            elif canonical != actual[name.lower()]:
                message = f"{name}: the contract says {declared}, the SQL returns {actual[name.lower()]}"
                found.append(locate.at(source, f"{where}.data_type", "contract", message))
    declared_names = {c["name"].lower() for c in (node.get("columns") or {}).values()}
    for name, kind in returned:
        if name.lower() not in declared_names:
            message = f"the SQL returns {name} ({kind}), which the contract does not declare"
            found.append(locate.at(source, f"models.{model}.columns", "contract", message))
    return found


def pii_problems(
    manifest: Mapping[str, Any], specs: list[ProductSpec], columns: NodeColumns, locate: Locator
) -> list[Finding]:
    """The PII gate's blocking findings (a build holds these products back), at the column's line."""
    found = []
    for finding in pii_findings(manifest, specs, columns):
        if finding.blocking:
            spec = next(s for s in specs if s.name == finding.product)
            model = spec.model_unique_id.split(".")[-1]
            where = f"models.{model}.columns.{finding.column}"
            found.append(locate.at(spec.source_file, where, "pii", finding.message))
    return found


def _scoped_origin(graph: PiiGraph, start: Column, scoped: set[str]) -> Column | None:
    """The nearest upstream column of `start` named like a scope column (`district`), if any."""
    seen, frontier = {start}, [start]
    while frontier:
        following = []
        for step in frontier:
            for parent in graph.inputs(step)[0]:
                if parent[1].lower() in scoped:
                    return parent
                if parent not in seen:
                    seen.add(parent)
                    following.append(parent)
        frontier = following
    return None


def derived_scope_problems(
    manifest: Mapping[str, Any],
    specs: list[ProductSpec],
    columns: NodeColumns,
    scoped: set[str],
    locate: Locator,
) -> list[Finding]:
    """A product column computed from a scope column under another name (`district as ward`) in a
    product that neither declares a scope column users.yaml limits nor records `unscoped`: the row
    scope matches columns by name (`policies.rules.row_filter`), so every scoped reader would see
    every row. Only here: it needs the column lineage of the compiled SQL (the PII gate's graph)."""
    graph, found = PiiGraph(manifest, columns), []
    for spec in specs:
        if spec.unscoped or (spec.scope_column or "").lower() in scoped:
            continue
        model = spec.model_unique_id.split(".")[-1]
        for column in spec.columns:
            if column.name.lower() in scoped:
                continue  # named so: the policy lint's undeclared-scope
            origin = _scoped_origin(graph, (spec.model_unique_id, column.name), scoped)
            if origin is not None:
                message = (
                    f"{spec.name}.{column.name} is computed from {graph.label(origin, {})}, which scopes "
                    f"readers, but the row scope applies only to a column named {origin[1]!r}: every scoped "
                    f"reader would see every row. Name it {origin[1]} and declare it as scope_column, or "
                    f'record `unscoped: "<why>"`'
                )
                where = f"models.{model}.columns.{column.name}"
                found.append(locate.at(spec.source_file, where, "undeclared-scope", message))
    return found


def _lint(
    settings: Settings, every: list[ProductSpec], checked: list[ProductSpec], locate: Locator
) -> list[Finding]:
    """The policy lint with every product of the project; a product's finding only for `checked`."""
    texts, unreadable = read_texts(settings.policies_dir)
    found = []
    for problem in unreadable + lint_texts(texts, every):
        spec = next((s for s in every if problem.where in (s.source_file, s.name)), None)
        if spec is not None and spec.name not in {c.name for c in checked}:
            continue
        if spec is not None:
            where = f"models.{spec.model_unique_id.split('.')[-1]}"
            found.append(locate.at(spec.source_file, where, problem.code, problem.message))
        else:
            file, _, line = problem.where.partition(":")
            path = settings.policies_dir / file
            found.append(
                Finding(str(path), int(line) if line.isdigit() else None, problem.code, problem.message)
            )
    return found


def retired_message(name: str, reason: str) -> str:
    return (
        f"{name} was retired ({reason}): a build refuses to publish that name again; remove its model, "
        "or give the product a new name"
    )


def _retired(specs: list[ProductSpec], retired: Mapping[str, str], locate: Locator) -> list[Finding]:
    """A product named like a retired one: the build refuses to publish it (`Catalog.publish`)."""
    found = []
    for spec in specs:
        if spec.name in retired:
            where = f"models.{spec.model_unique_id.split('.')[-1]}"
            message = retired_message(spec.name, retired[spec.name])
            found.append(locate.at(spec.source_file, where, "retired", message))
    return found


def _inputs(
    manifest: Mapping[str, Any], nodes: list[Mapping[str, Any]], specs: list[ProductSpec], locate: Locator
) -> list[Finding]:
    """What the publish gate says of a product's inputs: another department's data read other
    than through its open products, a more strictly classified product it is built from."""
    found = []
    for node, spec in zip(nodes, specs, strict=True):
        where = f"models.{node['name']}"
        for uid in foreign_inputs(manifest, node["unique_id"], spec.department):
            message = boundary_message(manifest, uid, spec.department)
            found.append(locate.at(spec.source_file, where, "boundary", message))
        for uid in stricter_inputs(manifest, spec):
            message = downgrade_message(manifest, uid, spec)
            field = f"{where}.config.meta.civicmesh.classification"
            found.append(locate.at(spec.source_file, field, "classification", message))
    return found


def _scoped(settings: Settings) -> set[str]:
    """The column names users.yaml's `scopes:` limit readers by (lower case); none when it does not
    load (the policy lint reports that)."""
    try:
        directory = parse_directory((settings.policies_dir / USERS_FILE).read_text(), USERS_FILE)
    except (OSError, PolicyError):
        return set()
    return {column.lower() for column in directory.scopes.values()}


def check_products(
    settings: Settings, names: Sequence[str] = (), retired: Mapping[str, str] | None = None
) -> CheckReport:
    """Every finding for the named products (default: all), see the module docstring. `retired`:
    {product: reason} of the catalog's retired products (names a build would refuse)."""
    locate = Locator(settings.dbt_project_dir)
    try:
        manifest = compile_models(settings, [n.split(".")[-1] for n in names])
    except CompileFailed as exc:
        return CheckReport(findings=exc.findings)
    nodes = product_nodes(manifest, names)
    groups = manifest.get("groups") or {}
    report = CheckReport()
    for node in nodes:
        spec, problems = collect_spec(node, groups)
        report.specs.append(spec)
        report.findings += [locate.spec(p) for p in problems]
    report.findings += _retired(report.specs, retired or {}, locate)
    report.findings += _inputs(manifest, nodes, report.specs, locate)
    scratch = Scratch(manifest, settings.landing_dir, rows=False)
    try:
        scratch.stage([n["unique_id"] for n in nodes])
        report.findings += [replace(f, file=str(locate.project_dir / f.file)) for f in scratch.findings]
        returned = warehouse_columns(scratch.con, manifest)
        for node in nodes:
            report.findings += contract_findings(scratch, node, returned.get(node["unique_id"]), locate)
    finally:
        scratch.close()
    lineage = NodeColumns(manifest, returned)
    report.findings += pii_problems(manifest, report.specs, lineage, locate)
    report.findings += derived_scope_problems(manifest, report.specs, lineage, _scoped(settings), locate)
    every = [collect_spec(n, groups)[0] for n in manifest["nodes"].values() if is_product_node(n)]
    checked = {s.source_file for s in report.specs}
    report.findings += [locate.spec(p) for p in duplicate_names(every) if p.source in checked]
    report.findings += _lint(settings, every, report.specs, locate)
    return report
