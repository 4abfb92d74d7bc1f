"""PII follows lineage: a product column derived from a PII column is PII too, unless declared otherwise.

Works on the dbt manifest alone (compiled SQL + column tags), so a build can check every product
*before* publishing it. A column is a PII source when its yml tags it `pii` or gives it a mask
(`meta.mask`) or `meta.pii: true`, in any model, seed, snapshot or source. Hashing does not clear
it: a keyed or unkeyed hash of a person's e-mail is still a pseudonym of that person. The owner
clears a derivative only by declaring it in the contract: a mask (it is PII, masked on read) or
`meta.deidentified: "<reason>"` (it is not, and here is why).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from civicmesh.products import ProductSpec
from lineage.dbt import NodeColumns, manifest_node, relation_of

Column = tuple[str, str]  # (node unique_id, column name)


@dataclass(frozen=True)
class PiiFinding:
    product: str
    column: str
    kind: str  # "undeclared_pii" blocks publishing; "deidentified" is the owner's recorded decision
    path: tuple[str, ...]  # product column first, the PII source last
    reason: str | None = None

    @property
    def blocking(self) -> bool:
        return self.kind == "undeclared_pii"

    @property
    def message(self) -> str:
        chain = " <- ".join(self.path)
        if self.blocking:
            return (
                f"{self.product}.{self.column} is derived from PII ({chain}) but its contract declares "
                "no mask; add meta.mask, or meta.deidentified with the reason it is not personal data"
            )
        return f"{self.product}.{self.column} is derived from PII ({chain}); de-identified: {self.reason}"


def _is_pii(column: Mapping[str, Any]) -> bool:
    meta = {**(column.get("meta") or {}), **((column.get("config") or {}).get("meta") or {})}
    tags = set(column.get("tags") or ()) | set((column.get("config") or {}).get("tags") or ())
    return "pii" in tags or meta.get("mask") is not None or meta.get("pii") is True


class _Lineage:
    """Column-level edges of the manifest's models, computed lazily from their compiled SQL."""

    def __init__(
        self, manifest: Mapping[str, Any], warehouse_path: Path | str, columns: NodeColumns | None = None
    ) -> None:
        self.manifest = manifest
        self.warehouse_path = warehouse_path
        self.columns = columns if columns is not None else NodeColumns(manifest)
        self._by_relation: dict[str, str] = {}
        for kind in ("nodes", "sources"):
            for uid, node in (manifest.get(kind) or {}).items():
                if uid.startswith(("model.", "seed.", "snapshot.", "source.")):
                    self._by_relation[relation_of(node, warehouse_path).name.lower()] = uid
        self._edges: dict[str, dict[str, list[Column]]] = {}

    def inputs(self, uid: str, column: str) -> list[Column]:
        if uid not in self._edges:
            self._edges[uid] = self._model_edges(uid)
        return self._edges[uid].get(column, [])

    def _model_edges(self, uid: str) -> dict[str, list[Column]]:
        if not uid.startswith("model."):
            return {}
        fields = self.columns.lineage(uid, self.warehouse_path)
        edges: dict[str, list[Column]] = {}
        for name, spec in fields.items():
            edges[name] = [
                (self._by_relation[f.name.lower()], f.field)
                for f in spec.inputFields
                if f.name.lower() in self._by_relation
            ]
        return edges

    def is_pii(self, uid: str, column: str) -> bool:
        node = manifest_node(self.manifest, uid) or {}
        declared = (node.get("columns") or {}).get(column)
        return bool(declared) and _is_pii(declared)

    def pii_source(self, start: Column) -> list[Column] | None:
        """The path from `start` to the nearest PII column strictly upstream of it, if any."""
        seen = {start}
        frontier: list[list[Column]] = [[start]]
        while frontier:
            next_frontier = []
            for path in frontier:
                for parent in self.inputs(*path[-1]):
                    if parent in seen:
                        continue
                    seen.add(parent)
                    if self.is_pii(*parent):
                        return [*path, parent]
                    next_frontier.append([*path, parent])
            frontier = next_frontier
        return None

    def label(self, column: Column, products: Mapping[str, str]) -> str:
        uid, name = column
        if uid in products:
            where = products[uid]
        else:
            where = relation_of(manifest_node(self.manifest, uid) or {}, self.warehouse_path).name
        return f"{where}.{name}" + (" [pii]" if self.is_pii(uid, name) else "")


def pii_findings(
    manifest: Mapping[str, Any],
    specs: Iterable[ProductSpec],
    warehouse_path: Path | str,
    columns: NodeColumns | None = None,
    *,
    products: Mapping[str, str] | None = None,
) -> list[PiiFinding]:
    """Every product column lineage says is PII but the contract does not mark as PII.

    `columns` (a NodeColumns of the same manifest) reuses column lineage already parsed;
    `products` ({model unique_id: product name}, default: `specs`) names product models in paths
    when only some products are checked."""
    specs = list(specs)
    products = products if products is not None else {s.model_unique_id: s.name for s in specs}
    graph = _Lineage(manifest, warehouse_path, columns)
    findings = []
    for spec in specs:
        for column in spec.columns:
            if column.pii:
                continue
            path = graph.pii_source((spec.model_unique_id, column.name))
            if path is None:
                continue
            labels = tuple(graph.label(step, products) for step in path)
            kind = "deidentified" if column.deidentified_reason else "undeclared_pii"
            findings.append(PiiFinding(spec.name, column.name, kind, labels, column.deidentified_reason))
    return findings
