"""PII is declared where data enters and follows column lineage to every product column.

Sources and seeds declare their columns and which are personal data (vocabulary:
`meshcore.products.column_classification`); a model or snapshot column may add a `pii` declaration,
never remove one. A product column inherits PII through every input of its own expression: DIRECT
edges (identity, transformation, aggregation; a hash is still a pseudonym of the person) and the
INDIRECT ones inside the expression (a CASE/IF condition, an aggregate's FILTER, a window's
PARTITION BY/ORDER BY), which decide the value: a macro spells a whole e-mail out of
`case when substr(email, i, 1) = 'a' then 'a' ...`. The dataset-level INDIRECT inputs (WHERE, JOIN
ON, GROUP BY, ORDER BY) decide which rows, and carry nothing.

Where data enters is a relation, not a yml entry: every source naming the same table shares one
classification (a second yml declaring `requester_email` plain does not make it plain), a source
naming a relation dbt builds (a model, seed or snapshot) is that node, and a snapshot is followed
through its SQL like a model (its dbt_* columns through `unique_key` and `updated_at`).

Fail closed: a product column whose lineage cannot be resolved exactly (`lineage.sql_lineage`), or
that reaches a source column no yml declares, is *unknown*, and unknown blocks publish like
undeclared PII. The owner clears a column only in the product's own contract: a mask (it is PII,
masked on read) or `meta.deidentified: "<reason>"` (it is not personal data, and here is why; the
reason is recorded and shown in the catalog).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lineage.dbt import NodeColumns, manifest_node, relation_key, snapshot_meta_columns
from meshcore.products import ProductSpec, column_classification

Column = tuple[str, str]  # (node unique_id, column name as DuckDB spells it)
LEAVES = ("source.", "seed.")  # where data enters: their yml is the classification
BUILT = ("model.", "seed.", "snapshot.")  # relations dbt writes
BLOCKING = ("undeclared_pii", "unknown_lineage")
# A relation that reads itself back (a source naming the model's own table): what it holds came from
# an earlier build, whose SQL and classification may have been anything.
CYCLE = "read back from its own table, so from an earlier build whose lineage is not known"
# Not a finding about the data: the warehouse could not say what the model returns (not built).
NOT_DESCRIBED = "DuckDB did not describe this column after the build"


@dataclass(frozen=True)
class PiiFinding:
    product: str
    column: str
    kind: str  # undeclared_pii | unknown_lineage (both block publish) | deidentified (recorded)
    path: tuple[str, ...]  # product column first, the source column (or the unresolved step) last
    reason: str | None = None  # the owner's de-identification reason, or why lineage is unknown
    unknown: bool = False  # the path ends where lineage is unknown (not at a PII column)

    @property
    def blocking(self) -> bool:
        return self.kind in BLOCKING

    @property
    def message(self) -> str:
        chain = " <- ".join(self.path)
        fix = "declare meta.mask, or meta.deidentified with the reason it is not personal data"
        if self.kind == "undeclared_pii":
            return f"{self.product}.{self.column} is derived from PII ({chain}) and declares no mask; {fix}"
        if self.kind == "unknown_lineage":
            where = f" at {chain}" if len(self.path) > 1 else ""
            return (
                f"{self.product}.{self.column}: lineage unknown{where} ({self.reason}), so it may be "
                f"personal data; {fix}"
            )
        basis = f"lineage unknown at {chain}" if self.unknown else f"derived from PII: {chain}"
        return f"{self.product}.{self.column} is de-identified by its owner ({basis}): {self.reason}"


@dataclass(frozen=True)
class Trace:
    """Where a column's values come from, as far as the gate needs: the path to the nearest PII
    column, else the path to the first step whose lineage is unknown (with why), else neither."""

    pii: tuple[Column, ...] | None = None
    unknown: tuple[Column, ...] | None = None
    reason: str | None = None


class PiiGraph:
    """Column-level edges of a manifest's nodes, from `NodeColumns` (exact or unknown)."""

    def __init__(self, manifest: Mapping[str, Any], columns: NodeColumns) -> None:
        self.manifest = manifest
        self.columns = columns
        self.by_relation: dict[str, list[str]] = defaultdict(list)  # relation key -> unique ids
        for kind in ("nodes", "sources"):
            for uid, node in (manifest.get(kind) or {}).items():
                if uid.startswith((*BUILT, "source.")):
                    self.by_relation[relation_key(node)].append(uid)

    def _same_relation(self, uid: str, kinds: tuple[str, ...]) -> list[str]:
        return [
            u
            for u in self.by_relation.get(relation_key(manifest_node(self.manifest, uid) or {}), ())
            if u.startswith(kinds)
        ]

    def _entries(self, uid: str) -> list[str]:
        """The nodes whose yml classifies `uid`'s columns: itself, or for a source every source
        naming the same table (two ymls of one table cannot make a personal column plain)."""
        return (self._same_relation(uid, ("source.",)) or [uid]) if uid.startswith("source.") else [uid]

    def _own(self, uid: str, column: str) -> Mapping[str, Any] | None:
        declared = (manifest_node(self.manifest, uid) or {}).get("columns") or {}
        return next((c for name, c in declared.items() if name.lower() == column.lower()), None)

    def _declared_pii_by(self, step: Column) -> list[str]:
        return [u for u in self._entries(step[0]) if column_classification(self._own(u, step[1]) or {}).pii]

    def is_pii(self, step: Column) -> bool:
        return bool(self._declared_pii_by(step))

    def inputs(self, step: Column) -> tuple[list[Column], str | None]:
        """The columns `step`'s values are computed from, or why that is not known."""
        uid, column = step
        if uid.startswith("source."):
            built = self._same_relation(uid, BUILT)
            if built:  # not where data enters: a relation dbt builds, under another name
                return [(built[0], column)], None
        if uid.startswith(LEAVES):
            if all(self._own(u, column) is None for u in self._entries(uid)):
                node = manifest_node(self.manifest, uid) or {}
                where = node.get("original_file_path") or node.get("patch_path") or "its yml"
                return [], f"not declared in {where}: declare it and its classification where data enters"
            return [], None
        if uid.startswith("snapshot."):
            meta = snapshot_meta_columns(manifest_node(self.manifest, uid) or {})
            if column.lower() in meta:
                return [(uid, c) for c in meta[column.lower()]], None
        lineage = self.columns.lineage(uid).column(column)
        if lineage is None:
            return [], NOT_DESCRIBED
        if lineage.unknown is not None:
            return [], lineage.unknown
        parents = self.columns.inputs(uid)
        by_relation = {relation_key(manifest_node(self.manifest, p) or {}): p for p in parents}
        return [(by_relation[f.relation], f.column) for f in lineage.inputs], None

    def trace(self, start: Column) -> Trace:
        """Breadth first, so the reported PII path is a shortest one."""
        came_from: dict[Column, Column | None] = {start: None}
        unknown: tuple[tuple[Column, ...], str] | None = None
        frontier = [start]
        while frontier:
            following = []
            for step in frontier:
                parents, problem = self.inputs(step)
                if problem is not None and unknown is None:
                    unknown = (_path(came_from, step), problem)
                for parent in parents:
                    if parent in came_from:
                        if unknown is None and parent in (path := _path(came_from, step)):
                            unknown = ((*path, parent), CYCLE)
                        continue
                    came_from[parent] = step
                    if self.is_pii(parent):
                        return Trace(pii=_path(came_from, parent))
                    following.append(parent)
            frontier = following
        return Trace(unknown=unknown[0], reason=unknown[1]) if unknown else Trace()

    def label(self, step: Column, products: Mapping[str, str]) -> str:
        uid, column = step
        node = manifest_node(self.manifest, uid) or {}
        if uid.startswith("source."):
            where = _source_name(node)
        else:
            where = products.get(uid) or ".".join(relation_key(node).split(".")[1:])
        return f"{where}.{column}" + self._pii_note(uid, column)

    def _pii_note(self, uid: str, column: str) -> str:
        by = self._declared_pii_by((uid, column))
        if not by or uid in by:
            return " [pii]" if by else ""
        names = sorted(_source_name(manifest_node(self.manifest, u) or {}) for u in by)
        return f" [pii, declared in {', '.join(names)}]"


def _source_name(node: Mapping[str, Any]) -> str:
    """A source as its SQL names it: `source('<source_name>', '<name>')`."""
    return f"{node.get('source_name')}.{node.get('name')}"


def _path(came_from: Mapping[Column, Column | None], end: Column) -> tuple[Column, ...]:
    path = [end]
    while (previous := came_from[path[-1]]) is not None:
        path.append(previous)
    return tuple(reversed(path))


def pii_findings(
    manifest: Mapping[str, Any],
    specs: Iterable[ProductSpec],
    columns: NodeColumns,
    *,
    products: Mapping[str, str] | None = None,
) -> list[PiiFinding]:
    """Every product column lineage says is (or may be) PII without a mask in its contract, plus
    the de-identified ones (recorded, not blocking).

    `columns` (a NodeColumns of the same manifest, with the warehouse's columns) gives the
    lineage; `products` ({model unique_id: product name}, default: `specs`) names product models
    in paths when only some products are checked."""
    specs = list(specs)
    products = products if products is not None else {s.model_unique_id: s.name for s in specs}
    graph = PiiGraph(manifest, columns)
    findings = []
    for spec in specs:
        for column in spec.columns:
            if column.pii:
                continue
            trace = graph.trace((spec.model_unique_id, column.name))
            path = trace.pii or trace.unknown
            if path is None:
                continue
            reason: str | None
            if column.deidentified_reason:
                kind, reason = "deidentified", column.deidentified_reason
            else:
                kind, reason = ("undeclared_pii", None) if trace.pii else ("unknown_lineage", trace.reason)
            labels = tuple(graph.label(step, products) for step in path)
            findings.append(PiiFinding(spec.name, column.name, kind, labels, reason, unknown=not trace.pii))
    return findings
