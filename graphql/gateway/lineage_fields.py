"""`lineage(product:, direction:, depth:)` for holders of the `lineage` right on the product.

The graph is built from the lineage outbox once and then fed only the events appended since
(LineageGraph.add is incremental), so a query walks an in-memory graph instead of re-reading
every event. A product the caller may not discover gets the same answer as an unknown one.
"""

from __future__ import annotations

import threading
from enum import Enum

import anyio.to_thread
import strawberry

from gateway.context import RequestContext, Touch
from gateway.errors import NOT_AVAILABLE, bad_input, forbidden
from lineage import naming
from lineage.graph import DATASET, LineageGraph, Node
from lineage.outbox import Outbox

MAX_DEPTH = 20


class GraphCache:
    """The process's lineage graph, kept up to date from the outbox by sequence number."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.graph = LineageGraph()
        self.seq = 0
        self._lock = threading.Lock()

    def walk(self, product: str, direction: str, depth: int) -> dict:
        """Catch up with the outbox, then walk; both under the lock (the graph is mutable)."""
        with self._lock:
            for event in self.outbox.events(after_seq=self.seq):
                self.graph.add(event.as_dict())
                self.seq = event.seq
            ref = naming.product_dataset(product)
            return self.graph.walk(Node(DATASET, ref.namespace, ref.name), direction, depth).as_dict()


@strawberry.enum
class LineageDirection(Enum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@strawberry.type
class LineageNode:
    id: str
    kind: str
    namespace: str
    name: str
    depth: int


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
        description="Where a product comes from (upstream) or what was derived from it "
        "and who read it (downstream)."
    )
    async def lineage(
        self,
        info: strawberry.Info,
        product: str,
        direction: LineageDirection = LineageDirection.UPSTREAM,
        depth: int = 5,
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
            walked = await anyio.to_thread.run_sync(ctx.lineage_graph.walk, product, direction.value, depth)
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        touch.rows = len(walked["nodes"])
        ctx.touch(touch)
        return LineageResult(
            root=walked["root"],
            direction=walked["direction"],
            nodes=[
                LineageNode(
                    id=n["id"], kind=n["kind"], namespace=n["namespace"], name=n["name"], depth=n["depth"]
                )
                for n in walked["nodes"]
            ],
            edges=[LineageEdge(from_=e["from"], to=e["to"]) for e in walked["edges"]],
        )
