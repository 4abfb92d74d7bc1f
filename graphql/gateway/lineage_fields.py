"""`lineage(product:, column:, direction:, depth:)` for holders of the `lineage` right on the product.

The graph is built from the lineage outbox once and then fed only the events appended since
(LineageGraph.add is incremental), so a query walks an in-memory graph instead of re-reading
every event. A product the caller may not discover gets the same answer as an unknown one.

Nodes the caller may not know of are redacted, never named: a product dataset the caller may not
discover (or one the catalog does not hold), the jobs that build or publish such a product
(`publish.<product>`, its dbt model job) and the warehouse tables those jobs write. A redacted
node keeps its place in the graph (kind, depth, edges) under an opaque id, `redacted:<n>`, and
so does everything the walk reached only through redacted nodes (e.g. the landing files of a
hidden product): what lies behind a hidden product is not named either. Whether a node is
redacted depends only on what the caller may discover, never on whether a hidden name exists,
so redaction is no oracle for guessed names.

Reader identities are audit data: a consumer job (`consumer.<subject>.read|export`) and its edge
from a product appear only where the caller holds `audit` on that product; to anyone else the
answer is the dataset graph alone, with no trace of readers. Server file paths (landing files,
the warehouse file) are shown only to a caller holding `audit` on the product asked about; others
see the file's name alone.
"""

from __future__ import annotations

import hmac
import itertools
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePosixPath
from typing import Any

import anyio.to_thread
import strawberry

from gateway.context import RequestContext, Touch
from gateway.errors import NOT_AVAILABLE, bad_input, forbidden
from gateway.naming import camel
from lineage import naming
from lineage.graph import DATASET, JOB, LineageGraph, Node
from lineage.outbox import Outbox
from lineage.readers import derived_products, resolve

REDACTED = "(redacted)"
PUBLISH_PREFIX = naming.publish_job("").name  # "publish."
_ORDER_KEY = secrets.token_bytes(16)

MAX_DEPTH = 20


class GraphCache:
    """The process's lineage graph, kept up to date from the outbox by sequence number."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.graph = LineageGraph()
        self.seq = 0
        self._lock = threading.Lock()

    def _catch_up(self) -> None:
        for event in self.outbox.events(after_seq=self.seq):
            self.graph.add(event.as_dict())
            self.seq = event.seq

    def walk(self, product: str, direction: str, depth: int) -> dict:
        """Catch up with the outbox, then walk; both under the lock (the graph is mutable)."""
        with self._lock:
            self._catch_up()
            ref = naming.product_dataset(product)
            return self.graph.walk(Node(DATASET, ref.namespace, ref.name), direction, depth).as_dict()

    def owned(self, namespace: str, name: str) -> bool:
        """True if only civicmesh may state this dataset's lineage (see `LineageGraph.is_owned`)."""
        with self._lock:
            self._catch_up()
            return self.graph.is_owned(Node(DATASET, namespace, name))

    def derived_products(self, product: str, depth: int) -> set[str]:
        """Every product downstream of `product`, through the marts it is published from."""
        with self._lock:
            self._catch_up()
            return derived_products(self.graph, resolve(self.graph, product), depth)

    def walk_governed(
        self, product: str, column: str | None, direction: str, depth: int, caller: Caller
    ) -> dict:
        """The walk as `caller` may see it: products it may discover stay named, everything tied to a
        hidden product (see `_Redactor`) becomes a placeholder, readers only where it audits."""
        with self._lock:
            self._catch_up()
            ref = naming.product_dataset(product)
            root = Node(DATASET, ref.namespace, ref.name)
            if column is None:
                sub = self.graph.walk(root, direction, depth)
                nodes: list[tuple[Node, str | None, int]] = [
                    (n, None, d) for n, d in sorted(sub.nodes.items(), key=lambda i: (i[1], i[0]))
                ]
                edges: list[tuple[tuple[Node, str | None], tuple[Node, str | None]]] = [
                    ((a, None), (b, None)) for a, b in sorted(sub.edges)
                ]
                nodes, edges = _without_readers(self.graph, nodes, edges, caller.audited)
            else:
                nodes, edges = _walk_columns(self.graph, root, column, direction, depth)
            redactor = _Redactor(self.graph, caller)
            return redactor.render(root, column, direction, nodes, edges)


@dataclass(frozen=True)
class Caller:
    """What the caller may know: `visible` products (discover), `hidden` ones (their specs, to name
    their jobs), `audited` products (their readers), and whether server paths may be shown."""

    visible: frozenset[str]
    hidden: tuple[Any, ...]
    audited: frozenset[str]
    paths: bool


def _without_readers(graph: LineageGraph, nodes: list[Any], edges: list[Any], audited: frozenset[str]) -> Any:
    """Consumer jobs and their edges, kept only from products the caller audits (readers are leaves:
    they read and write nothing downstream, so nothing else hangs on them)."""
    namespace = naming.product_namespace()
    kept = []
    for a, b in edges:
        reader = a[0] if graph.is_reader(a[0]) else b[0] if graph.is_reader(b[0]) else None
        other = b[0] if reader is a[0] else a[0]
        if reader is None or (other.namespace == namespace and other.name in audited):
            kept.append((a, b))
    shown = {key[0] for edge in kept for key in edge}
    return [n for n in nodes if not graph.is_reader(n[0]) or n[0] in shown], kept


def _walk_columns(
    graph: LineageGraph, root: Node, column: str, direction: str, depth: int
) -> tuple[list[tuple[Node, str | None, int]], list[tuple[tuple[Node, str | None], tuple[Node, str | None]]]]:
    """`LineageGraph.column_walk` as (dataset, column, hops) nodes and edges, in a stable order."""
    seen, edges = graph.column_walk(root, column, direction, depth)
    nodes = [(n, c, d) for (n, c), d in sorted(seen.items(), key=lambda i: (i[1], i[0]))]
    return nodes, sorted(edges)  # type: ignore[return-value]


class _Redactor:
    """Decides which nodes the caller may see by name, and renders the rest as placeholders."""

    def __init__(self, graph: LineageGraph, caller: Caller) -> None:
        self.graph = graph
        self.visible = caller.visible
        self.paths = caller.paths
        self.namespace = naming.product_namespace()
        # dbt model jobs that build a hidden product (`dbt.<package>.<model>`); publish jobs are
        # judged by the product their name states, whether or not it exists.
        self.hidden_jobs: set[str] = set()
        for spec in caller.hidden:
            parts = spec.model_unique_id.split(".")
            if len(parts) >= 3 and parts[0] == "model":
                self.hidden_jobs.add(naming.dbt_model_job(parts[1], parts[-1]).name)
        self._memo: dict[Node, bool] = {}

    def is_hidden(self, node: Node) -> bool:
        hit = self._memo.get(node)
        if hit is None:
            hit = self._memo[node] = self._hidden(node)
        return hit

    def _hidden(self, node: Node) -> bool:
        if node.kind == DATASET and node.namespace == self.namespace:
            return node.name not in self.visible  # unknown products are hidden too
        if node.kind == JOB:
            outputs = self.graph.outputs.get(node, ())
            return self._builds_hidden(node) or any(
                o.namespace == self.namespace and o.name not in self.visible for o in outputs
            )
        # Any other dataset: hidden if a job that builds a hidden product wrote it (its warehouse table).
        return any(
            node in outputs and self._builds_hidden(job) for job, outputs in self.graph.outputs.items()
        )

    def _builds_hidden(self, job: Node) -> bool:
        """A civicmesh job named for a product the caller may not discover (existing or not)."""
        if job.namespace != naming.JOB_NAMESPACE:
            return False
        if job.name.startswith(PUBLISH_PREFIX):
            return job.name.removeprefix(PUBLISH_PREFIX) not in self.visible
        return job.name in self.hidden_jobs

    def shown(self, node: Node) -> tuple[str, str]:
        """(namespace, name) as this caller sees a named node: server paths only with `paths`."""
        if self.paths or node.kind != DATASET:
            return node.namespace, node.name
        namespace, name = node.namespace, node.name
        scheme, sep, path = namespace.partition("://")
        if sep and path.startswith("/"):  # e.g. duckdb:///srv/home/warehouse.duckdb
            namespace = f"{scheme}://{PurePosixPath(path).name}"
        if name.startswith("/"):  # e.g. a landing file's absolute path
            name = PurePosixPath(name).name
        return namespace, name

    def _reachable(self, root: Any, direction: str, edges: Any) -> set[Any]:
        """Nodes (or (node, column) pairs) reached from the root without passing a hidden node."""
        forward: dict[Any, list[Any]] = {}
        for a, b in edges:
            if direction == "upstream":
                forward.setdefault(b, []).append(a)
            else:
                forward.setdefault(a, []).append(b)
        seen = {root}
        queue = deque([root])
        while queue:
            here = queue.popleft()
            if here != root and self.is_hidden(here[0]):
                continue  # reached, but nothing is named through it
            for there in forward.get(here, ()):
                if there not in seen:
                    seen.add(there)
                    queue.append(there)
        return {key for key in seen if not self.is_hidden(key[0])}

    def render(self, root: Node, column: str | None, direction: str, nodes: Any, edges: Any) -> dict:
        named = self._reachable((root, column), direction, edges)
        # Placeholders come after the named nodes, by depth and kind, then in an order keyed with a
        # per-process secret: sorted by their real names they would tell where those names sort.
        nodes = [n for n in nodes if (n[0], n[1]) in named] + sorted(
            (n for n in nodes if (n[0], n[1]) not in named),
            key=lambda n: (
                n[2],
                n[0].kind,
                hmac.new(_ORDER_KEY, f"{n[0].id}#{n[1]}".encode(), "sha256").digest(),
            ),
        )
        ids: dict[Any, str] = {}
        used: set[str] = set()
        placeholders = itertools.count(1)

        def node_id(key: tuple[Node, str | None]) -> str:
            if key in ids:
                return ids[key]
            if key in named:
                namespace, name = self.shown(key[0])
                base = f"{key[0].kind}:{namespace}/{name}" + ("" if key[1] is None else f"#{key[1]}")
                text, n = base, 1
                while text in used:  # two files of one name in different folders
                    n += 1
                    text = f"{base}~{n}"
            else:
                text = f"redacted:{next(placeholders)}"
            used.add(text)
            return ids.setdefault(key, text)

        out_nodes = []
        for node, col, depth in nodes:
            shown = (node, col) in named
            namespace, name = self.shown(node) if shown else ("", REDACTED)
            out_nodes.append(
                {
                    "id": node_id((node, col)),
                    "kind": node.kind,
                    "namespace": namespace,
                    "name": name,
                    "column": col if shown else None,
                    "depth": depth,
                    "redacted": not shown,
                }
            )
        return {
            "root": node_id((root, column)),
            "direction": direction,
            "nodes": out_nodes,
            # sorted by what is shown, so the order says nothing about the hidden names either
            "edges": [{"from": a, "to": b} for a, b in sorted({(node_id(a), node_id(b)) for a, b in edges})],
        }


def _caller(ctx: RequestContext, root: Any) -> Caller:
    entries = ctx.state.entries
    visible = frozenset(n for n, e in entries.items() if ctx.decide(e, "discover").allowed)
    return Caller(
        visible=visible,
        hidden=tuple(e.spec for n, e in entries.items() if n not in visible),
        audited=frozenset(n for n in visible if ctx.decide(entries[n], "audit").allowed),
        paths=ctx.decide(root, "audit").allowed,
    )


@strawberry.enum
class LineageDirection(Enum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@strawberry.type(description="A dataset, job or column in the lineage graph; `redacted` ones are unnamed.")
class LineageNode:
    id: str
    kind: str
    namespace: str
    name: str
    column: str | None
    depth: int
    redacted: bool


@strawberry.type
class LineageEdge:
    from_: str = strawberry.field(name="from")
    to: str


@strawberry.type
class LineageResult:
    root: str
    direction: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


@strawberry.type
class LineageQuery:
    @strawberry.field(
        description="Where a product (or one `column` of it) comes from (upstream) or what was "
        "derived from it and who read it (downstream). Nodes you may not know of are redacted."
    )
    async def lineage(
        self,
        info: strawberry.Info,
        product: str,
        direction: LineageDirection = LineageDirection.UPSTREAM,
        depth: int = 5,
        column: str | None = None,
    ) -> LineageResult | None:
        ctx: RequestContext = info.context
        ctx.cacheable = False  # the graph grows with every build and read
        touch = Touch(product=product, action="lineage", decision=None)
        try:
            entry = ctx.state.entries.get(product)
            discover = ctx.decide(entry, "discover") if entry else None
            touch.decision = discover
            if entry is None or discover is None or not discover.allowed:
                raise forbidden(NOT_AVAILABLE)
            decision = ctx.decide(entry, "lineage")
            touch.decision = decision
            if not decision.allowed:
                raise forbidden(decision.reason or "You may not see this product's lineage.")
            if not 1 <= depth <= MAX_DEPTH:
                raise bad_input(f"`depth` must be between 1 and {MAX_DEPTH}.")
            if column is not None:
                by_field = {camel(c.name): c.name for c in entry.spec.columns}
                names = {c.name for c in entry.spec.columns}
                column = column if column in names else by_field.get(column)
                if column is None:
                    raise bad_input("`column` is not a column of this product.")
                touch.columns_requested = [column]
            walked = await anyio.to_thread.run_sync(
                ctx.lineage_graph.walk_governed, product, column, direction.value, depth, _caller(ctx, entry)
            )
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        touch.rows = len(walked["nodes"])
        ctx.touch(touch)
        return LineageResult(
            root=walked["root"],
            direction=walked["direction"],
            nodes=[LineageNode(**n) for n in walked["nodes"]],
            edges=[LineageEdge(from_=e["from"], to=e["to"]) for e in walked["edges"]],
        )
