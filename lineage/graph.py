"""A lineage graph read back from OpenLineage events: datasets and jobs as nodes, reads and writes as edges.

Built from COMPLETE events only (a failed or denied run moved no data). A job's edges are those of its
latest completed run, so a model whose refs changed stops pointing at its old inputs; consumer jobs
(reads, exports) accumulate, because a caller that read a product once has consumed it.
Column lineage comes from `columnLineage` facets and is kept per (dataset, column).

What civicmesh recorded always wins over what another producer sent (`receiver.is_external`): an
external event in civicmesh's job namespace is ignored; it cannot name a civicmesh product or a
dataset a civicmesh job writes (`owned`) as its output, nor set classifications; and when a civicmesh
job later writes a dataset an external job claimed, the external claim is dropped. The receiver
refuses such events in the first place; the graph holds the rule for any event already stored.
An external job may still read a product and write a dataset civicmesh reads (a landing file):
what a walk with `recorded_only` (audit answers: "who read data derived from X") never follows.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lineage.naming import INGEST_FACET, JOB_NAMESPACE, PRODUCT_FACET, dataset_uri, stable_namespace
from lineage.receiver import PRODUCT_SCHEME, is_external

DATASET, JOB = "dataset", "job"
ACCUMULATING_JOB_TYPES = {"READ", "EXPORT"}
CONSUMER_PREFIX = "consumer."  # naming.consumer_job: one job per caller that read or exported


@dataclass(frozen=True, order=True)
class Node:
    kind: str
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.namespace}/{self.name}"

    @property
    def label(self) -> str:
        return self.name if self.kind == JOB else dataset_uri(self.namespace, self.name)


ColumnRef = tuple[Node, str]  # (dataset, column)


def _dataset(ref: dict[str, Any]) -> Node:
    """A dataset named in an event (inputs, outputs, column lineage), legacy namespaces made stable."""
    return Node(DATASET, stable_namespace(ref["namespace"]), ref["name"])


@dataclass
class Subgraph:
    root: Node
    direction: str
    nodes: dict[Node, int]  # node -> hops from the root
    edges: set[tuple[Node, Node]]
    info: dict[Node, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root.id,
            "direction": self.direction,
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "namespace": n.namespace,
                    "name": n.name,
                    "depth": d,
                    **self.info.get(n, {}),
                }
                for n, d in sorted(self.nodes.items(), key=lambda item: (item[1], item[0]))
            ],
            "edges": [{"from": a.id, "to": b.id} for a, b in sorted(self.edges)],
        }


@dataclass
class LineageGraph:
    inputs: dict[Node, set[Node]] = field(default_factory=lambda: defaultdict(set))  # job -> datasets read
    outputs: dict[Node, set[Node]] = field(
        default_factory=lambda: defaultdict(set)
    )  # job -> datasets written
    info: dict[Node, dict[str, Any]] = field(default_factory=dict)
    # (dataset, column) -> {(input dataset, input column)}
    column_inputs: dict[tuple[Node, str], set[tuple[Node, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    owned: set[Node] = field(default_factory=set)  # datasets civicmesh's own jobs write
    external_jobs: set[Node] = field(default_factory=set)

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> LineageGraph:
        graph = cls()
        for event in events:
            graph.add(event)
        return graph

    def add(self, event: dict[str, Any]) -> None:
        if event.get("eventType") != "COMPLETE":
            return
        job_data = event["job"]
        job = Node(JOB, job_data["namespace"], job_data["name"])
        external = is_external(event)
        if external and job.namespace == JOB_NAMESPACE:
            return  # only civicmesh records civicmesh's jobs
        job_type = ((job_data.get("facets") or {}).get("jobType") or {}).get("jobType")
        ins = {_dataset(d) for d in event.get("inputs") or ()}
        outs = {_dataset(d) for d in event.get("outputs") or ()}
        if external:
            outs = {o for o in outs if not self.is_owned(o)}
            self.external_jobs.add(job)
        else:
            self._claim(outs)
        if job_type in ACCUMULATING_JOB_TYPES:
            self.inputs[job] |= ins
            self.outputs[job] |= outs
        else:
            self.inputs[job], self.outputs[job] = ins, outs
        self.info[job] = {
            "jobType": job_type,
            "lastRun": event["run"]["runId"],
            "lastTime": event["eventTime"],
        }
        if external:
            facet = event["run"]["facets"][INGEST_FACET]
            self.info[job].update(external=True, submittedBy=facet.get("submittedBy"))
        for data in event.get("outputs") or ():
            if _dataset(data) in outs:
                self._dataset_info(data, external)
        for data in event.get("inputs") or ():
            self.info.setdefault(_dataset(data), {})

    def is_reader(self, node: Node) -> bool:
        """True for a civicmesh consumer job: one caller's reads or exports (a reader identity)."""
        if node.kind != JOB or node.namespace != JOB_NAMESPACE:
            return False
        job_type = self.info.get(node, {}).get("jobType")
        return node.name.startswith(CONSUMER_PREFIX) or job_type in ACCUMULATING_JOB_TYPES

    def is_owned(self, node: Node) -> bool:
        """True for a dataset only civicmesh may state the lineage of: a product, or one its jobs write."""
        return node.namespace.startswith(PRODUCT_SCHEME) or node in self.owned

    def _claim(self, outputs: set[Node]) -> None:
        """civicmesh writes `outputs`: no external job keeps them as its outputs any longer."""
        new = outputs - self.owned
        if not new:
            return
        self.owned |= new
        for job in self.external_jobs:
            if self.outputs.get(job, set()) & new:
                self.outputs[job] -= new

    def _dataset_info(self, data: dict[str, Any], external: bool = False) -> None:
        node = _dataset(data)
        facets = data.get("facets") or {}
        info = self.info.setdefault(node, {})
        if "version" in facets:
            info["version"] = facets["version"].get("datasetVersion")
        if "schema" in facets:
            info["columns"] = [f["name"] for f in facets["schema"].get("fields") or ()]
        if PRODUCT_FACET in facets and not external:
            info["classification"] = facets[PRODUCT_FACET].get("classification")
        lineage = (facets.get("columnLineage") or {}).get("fields") or {}
        for column in [key for key in self.column_inputs if key[0] == node]:
            del self.column_inputs[column]  # the latest write of a dataset states its column lineage
        for column, spec in lineage.items():
            for source in spec.get("inputFields") or ():
                self.column_inputs[(node, column)].add((_dataset(source), source["field"]))

    # -- queries ---------------------------------------------------------------------------------

    def has(self, node: Node) -> bool:
        return node in self.info

    def _neighbours(self, node: Node, upstream: bool, recorded_only: bool = False) -> set[Node]:
        if node.kind == JOB:
            return set(self.inputs.get(node, ())) if upstream else set(self.outputs.get(node, ()))
        side = self.outputs if upstream else self.inputs
        return {
            job
            for job, datasets in side.items()
            if node in datasets and not (recorded_only and job in self.external_jobs)
        }

    def walk(
        self, root: Node, direction: str = "upstream", depth: int = 10, recorded_only: bool = False
    ) -> Subgraph:
        """Nodes within `depth` dataset hops of `root` (a job between two datasets is half a hop).
        `recorded_only`: through civicmesh's own jobs only, never an external one (what an audit
        answer may rest on: a producer can state any job it likes)."""
        upstream = direction == "upstream"
        seen: dict[Node, int] = {root: 0}
        edges: set[tuple[Node, Node]] = set()
        queue = deque([(root, 0)])
        while queue:
            node, steps = queue.popleft()
            if steps >= depth * 2:
                continue
            for other in self._neighbours(node, upstream, recorded_only):
                edges.add((other, node) if upstream else (node, other))
                if other not in seen:
                    seen[other] = steps + 1
                    queue.append((other, steps + 1))
        nodes = {n: (s + 1) // 2 for n, s in seen.items()}
        return Subgraph(root, direction, nodes, edges, {n: self.info.get(n, {}) for n in nodes})

    def column_walk(
        self, dataset: Node, column: str, direction: str = "upstream", depth: int = 10
    ) -> tuple[dict[ColumnRef, int], set[tuple[ColumnRef, ColumnRef]]]:
        """Column-level lineage through columnLineage facets, breadth first: ({(dataset, column):
        hops from the root}, {(source, target) edges}) within `depth` hops. The one walk behind
        `walk_column` (CLI) and the gateway's governed column walk."""
        if direction == "upstream":
            step: dict[ColumnRef, set[ColumnRef]] = self.column_inputs
        else:
            step = defaultdict(set)
            for target, sources in self.column_inputs.items():
                for source in sources:
                    step[source].add(target)
        seen = {(dataset, column): 0}
        edges: set[tuple[ColumnRef, ColumnRef]] = set()
        queue = deque([(dataset, column)])
        while queue:
            here = queue.popleft()
            if seen[here] >= depth:
                continue
            for there in step.get(here, ()):
                edges.add((there, here) if direction == "upstream" else (here, there))
                if there not in seen:
                    seen[there] = seen[here] + 1
                    queue.append(there)
        return seen, edges

    def walk_column(
        self, dataset: Node, column: str, direction: str = "upstream", depth: int = 10
    ) -> dict[str, Any]:
        """Column-level lineage (`column_walk`) as JSON-ready labels: root, columns with depth, edges."""
        seen, edges = self.column_walk(dataset, column, direction, depth)
        return {
            "root": f"{dataset.label}#{column}",
            "direction": direction,
            "columns": [
                {"dataset": d.label, "column": c, "depth": n}
                for (d, c), n in sorted(seen.items(), key=lambda i: i[1])
            ],
            "edges": [
                {"from": f"{a.label}#{ac}", "to": f"{b.label}#{bc}"} for (a, ac), (b, bc) in sorted(edges)
            ],
        }
