""" "Who read data derived from X": follow lineage downstream from X, then join the access log.

X is a product (`<department>.<product>`) or any dataset lineage knows: a landing file (path or
`file:` URI), a raw or staging table (`raw.public_works_service_requests`, or its full DuckDB name).
Every product reachable downstream (X itself too, if it is a product) is joined with the allowed
read and export records of the access log: who read which derived product, when, and with which
masks and row filters. The CLI (`civicmesh audit readers --user`) and the gateway's
`readersOfDerived` both call `auditable_readers`, so they give the same answer: only the derived
products the caller may audit are shown, the others are neither shown nor named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lineage import naming
from lineage.graph import DATASET, LineageGraph, Node
from lineage.outbox import Outbox
from meshcore.accesslog import AccessLog
from meshcore.audit.archive import refuse_archived

READ_ACTIONS = ("read", "export")


class UnknownDataset(LookupError):
    pass


def load_graph(outbox: Outbox) -> LineageGraph:
    """The graph without consumer (read/export) jobs: they are leaves, never derive a product."""
    return LineageGraph.from_events(e.as_dict() for e in outbox.events(skip_job_prefix="consumer."))


def resolve(graph: LineageGraph, text: str) -> list[Node]:
    """The dataset node(s) `text` names: a product, a URI, a path or a (partial) table name.

    A product stands for its data: dbt models derive from the mart a product is published from,
    not from the published snapshot, so the mart(s) its publish job read are roots too."""
    ref = naming.product_dataset(text)
    product = Node(DATASET, ref.namespace, ref.name)
    if graph.has(product):
        return [product, *publish_sources(graph, product)]
    datasets = [n for n in graph.info if n.kind == DATASET]
    exact = [n for n in datasets if text in (n.name, n.label)]
    if exact:
        return exact
    as_path = str(Path(text).expanduser().resolve())
    found = [n for n in datasets if n.namespace == naming.FILE_NAMESPACE and n.name == as_path]
    if found:
        return found
    stripped = text.strip("/")
    return sorted(
        n
        for n in datasets
        if (n.namespace == naming.FILE_NAMESPACE and n.name.endswith("/" + stripped))
        or (n.namespace.startswith("duckdb://") and n.name.endswith("." + text))
    )


def publish_sources(graph: LineageGraph, product: Node) -> list[Node]:
    """The datasets (marts) the publish job(s) of `product` read."""
    return sorted(
        source
        for job, outputs in graph.outputs.items()
        if product in outputs and job.name.startswith("publish.")
        for source in graph.inputs.get(job, ())
    )


def derived_products(graph: LineageGraph, roots: Iterable[Node], depth: int = 10) -> set[str]:
    """Names of every product downstream of `roots` (a root that is a product included), through
    the jobs civicmesh recorded only: an external producer's job that reads one product and writes
    a landing file of another made the second's readers "readers of data derived from" the first."""
    namespace = naming.product_namespace()
    names: set[str] = set()
    for root in roots:
        for node in graph.walk(root, "downstream", depth, recorded_only=True).nodes:
            if node.kind == DATASET and node.namespace == namespace:
                names.add(node.name)
    return names


@dataclass
class DerivedRead:
    """One subject's allowed reads/exports of one derived product in the period."""

    subject: str | None
    product: str
    reads: int = 0
    rows: int = 0
    first: str = ""
    last: str = ""
    actions: set[str] = field(default_factory=set)
    masks: dict[str, str] = field(default_factory=dict)  # column -> mask kind, over all reads
    row_filters: list[dict[str, Any]] = field(default_factory=list)
    snapshots: set[str] = field(default_factory=set)
    request_ids: list[str] = field(default_factory=list)

    @property
    def masked_columns(self) -> list[str]:
        return sorted(self.masks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "product": self.product,
            "reads": self.reads,
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "actions": sorted(self.actions),
            "masks": dict(sorted(self.masks.items())),
            "maskedColumns": self.masked_columns,
            "rowFilters": self.row_filters,
            "snapshots": sorted(self.snapshots),
        }


def summarise(rows: Iterable[dict[str, Any]]) -> list[DerivedRead]:
    """Decoded access-log rows -> one DerivedRead per (subject, product), allowed reads only."""
    acc: dict[tuple[str | None, str], DerivedRead] = {}
    for row in rows:
        if row["decision"] != "allow" or row["action"] not in READ_ACTIONS or not row["product"]:
            continue
        item = acc.setdefault((row["subject"], row["product"]), DerivedRead(row["subject"], row["product"]))
        item.reads += 1
        item.rows += row["rows"] or 0
        item.first = item.first or row["ts"]
        item.last = row["ts"]
        item.actions.add(row["action"])
        item.masks.update(row["columns_masked"] or {})
        if row["row_filter"] and row["row_filter"] not in item.row_filters:
            item.row_filters.append(row["row_filter"])
        if row["snapshot_id"]:
            item.snapshots.add(row["snapshot_id"])
        item.request_ids.append(row["request_id"])
    return sorted(acc.values(), key=lambda r: (r.product, r.subject or ""))


def readers_of_derived(
    access_log: AccessLog,
    products: Collection[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[DerivedRead]:
    """Join: the allowed reads/exports of `products` in [since, until), per subject and product.
    Raises ArchivedPeriod when the period reaches into archived access-log records."""
    if not products:
        return []
    refuse_archived(access_log, since)
    rows: list[dict[str, Any]] = []
    after = 0
    while True:  # page through: a popular product has many reads
        page, _ = access_log.search(
            products=sorted(products), since=since, until=until, decision="allow", after_seq=after, limit=5000
        )
        rows += page
        if len(page) < 5000:
            break
        after = int(page[-1]["seq"])
    return summarise(rows)


def auditable_readers(
    access_log: AccessLog,
    products: Iterable[str],
    may_audit: Callable[[str], bool],
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[str], list[DerivedRead]]:
    """(the `products` the caller may audit, sorted; their readers in [since, until)). A product the
    caller may not audit is neither shown nor named, and its reads are not searched."""
    shown = sorted({name for name in products if may_audit(name)})
    return shown, readers_of_derived(access_log, shown, since, until)


def readers_from(
    graph: LineageGraph,
    access_log: AccessLog,
    dataset: str,
    since: datetime | None = None,
    until: datetime | None = None,
    depth: int = 10,
    known_products: Collection[str] = (),
    may_audit: Callable[[str], bool] = lambda name: True,
) -> tuple[list[str], list[DerivedRead]]:
    """(derived products, their readers) for a product or source dataset named `dataset`, narrowed
    to the products `may_audit` (see `auditable_readers`). Raises UnknownDataset."""
    roots = resolve(graph, dataset)
    if roots:
        products = derived_products(graph, roots, depth)
    elif dataset in known_products:  # a product with no lineage recorded yet: only itself
        products = {dataset}
    else:
        raise UnknownDataset(dataset)
    return auditable_readers(access_log, products, may_audit, since, until)
