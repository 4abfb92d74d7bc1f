"""External lineage never stands in for what civicmesh recorded: the receiver's rules on an event from
another producer, and — for events stored anyway (e.g. before these rules) — the precedence the graph
and the audit queries give civicmesh's own events. Attacks from issue 11: a forged publish, a forged
read, a forged derivation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ol_scenario import record_a_build_and_reads

from lineage import events, naming, queries
from lineage.facets import ACCESS_FACET, INGEST_FACET, PRODUCT_FACET
from lineage.graph import DATASET, JOB, LineageGraph, Node
from lineage.readers import derived_products, load_graph, resolve
from lineage.receiver import ForbiddenEvent, accept, is_external, mark
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings
from meshcore.store import dispose_all

PRODUCT = "public_works.service_requests"
HIDDEN = "hr.employees"
NOT_OWNED = lambda namespace, name: False  # noqa: E731


@pytest.fixture
def recorder(settings: Settings) -> Iterator[LineageRecorder]:
    record_a_build_and_reads(settings)
    yield LineageRecorder.from_settings(settings)
    dispose_all()


def _event(namespace: str, job: str, inputs: list[Any], outputs: list[Any]) -> dict[str, Any]:
    (event,) = events.lifecycle(
        run_id=events.new_run_id(),
        parent=None,
        job=events.make_job(naming.JobRef(job, namespace), "JOB"),
        inputs=[events.input_dataset(ref) for ref in inputs],
        outputs=[events.output_dataset(ref) for ref in outputs],
        include_start=False,
    )
    return events.to_dict(event)


def _node(ref: naming.DatasetRef) -> Node:
    return Node(DATASET, ref.namespace, ref.name)


def _upstream_jobs(graph: LineageGraph, ref: naming.DatasetRef) -> set[str]:
    return {f"{n.namespace}/{n.name}" for n in graph.walk(_node(ref), "upstream", 1).nodes if n.kind == JOB}


def test_an_accepted_event_is_marked_external_with_its_submitter() -> None:
    event = _event("city-etl", "report", [naming.product_dataset(PRODUCT)], [naming.file_dataset("/x/r.csv")])
    marked = accept(event, "airflow", NOT_OWNED)
    facet = marked["run"]["facets"][INGEST_FACET]
    assert facet["submittedBy"] == "airflow" and facet["external"] is True and facet["receivedAt"]
    assert is_external(marked) and not is_external(event)  # the caller's dict is left alone


@pytest.mark.parametrize(
    "case, message",
    [
        ("own-namespace", "civicmesh's own"),
        ("product-output", r"outputs\[0\] is written by civicmesh"),
        ("owned-output", r"outputs\[0\] is written by civicmesh"),
        ("access-facet", "run.facets: facets named civicmesh_"),
        ("product-facet", r"outputs\[0\].facets: facets named civicmesh_"),
    ],
)
def test_an_event_may_not_write_where_civicmesh_writes(case: str, message: str) -> None:
    mart = naming.duckdb_dataset("/srv/warehouse.duckdb", "main.service_requests")
    target = {"product-output": naming.product_dataset(PRODUCT), "owned-output": mart}
    event = _event(
        "civicmesh" if case == "own-namespace" else "city-etl",
        f"publish.{PRODUCT}" if case == "own-namespace" else "report",
        [naming.file_dataset("/x/in.csv")],
        [target.get(case, naming.file_dataset("/x/out.csv"))],
    )
    if case == "access-facet":
        event["run"]["facets"][ACCESS_FACET] = {"subject": "alice"}
    if case == "product-facet":
        event["outputs"][0]["facets"] = {PRODUCT_FACET: {"classification": "public"}}
    with pytest.raises(ForbiddenEvent, match=message):
        accept(event, "airflow", lambda namespace, name: (namespace, name) == (mart.namespace, mart.name))


def test_a_forged_publish_never_replaces_the_recorded_upstream(recorder: LineageRecorder) -> None:
    product = naming.product_dataset(PRODUCT)
    before = LineageGraph.from_events(e.as_dict() for e in recorder.outbox.events())
    recorded = _upstream_jobs(before, product)
    assert recorded == {f"civicmesh/publish.{PRODUCT}"}
    mart = next(iter(before.inputs[Node(JOB, "civicmesh", f"publish.{PRODUCT}")]))
    forged = [
        _event("civicmesh", f"publish.{PRODUCT}", [naming.file_dataset("/evil.csv")], [product]),
        _event("evil", "publish", [naming.file_dataset("/evil.csv")], [product]),
        _event(
            "evil", "mart", [naming.file_dataset("/evil.csv")], [naming.DatasetRef(mart.namespace, mart.name)]
        ),
    ]
    recorder.record([mark(e, "mallory") for e in forged])  # stored as if the receiver had let them in
    after = LineageGraph.from_events(e.as_dict() for e in recorder.outbox.events())
    assert _upstream_jobs(after, product) == recorded
    assert after.inputs[Node(JOB, "civicmesh", f"publish.{PRODUCT}")] == {mart}
    assert _upstream_jobs(after, naming.DatasetRef(mart.namespace, mart.name)) == _upstream_jobs(
        before, naming.DatasetRef(mart.namespace, mart.name)
    )


def test_civicmesh_writing_a_dataset_later_drops_an_external_claim() -> None:
    shared = naming.file_dataset("/landing/public_works/requests.csv")
    graph = LineageGraph()
    graph.add(mark(_event("city-etl", "drop", [naming.file_dataset("/x/a.csv")], [shared]), "airflow"))
    assert _upstream_jobs(graph, shared) == {"city-etl/drop"}
    graph.add(_event("civicmesh", "ingest.raw", [naming.file_dataset("/x/b.csv")], [shared]))
    assert _upstream_jobs(graph, shared) == {"civicmesh/ingest.raw"}
    graph.add(mark(_event("city-etl", "drop", [naming.file_dataset("/x/a.csv")], [shared]), "airflow"))
    assert _upstream_jobs(graph, shared) == {"civicmesh/ingest.raw"}, "and it cannot claim it back"


def test_an_external_event_sets_no_classification() -> None:
    out = naming.file_dataset("/x/out.csv")
    event = _event("city-etl", "report", [], [out])
    event["outputs"][0]["facets"] = {PRODUCT_FACET: {"classification": "public"}}
    graph = LineageGraph()
    graph.add(mark(event, "airflow"))
    assert "classification" not in graph.info[_node(out)]


def test_a_forged_read_makes_nobody_a_reader(recorder: LineageRecorder) -> None:
    product = naming.product_dataset(PRODUCT)
    forged = []
    for namespace in ("civicmesh", "evil"):
        event = _event(namespace, "consumer.alice.read", [product], [])
        event["run"]["facets"][ACCESS_FACET] = {"subject": "alice", "rowsReturned": 5}
        forged.append(mark(event, "mallory"))
    recorder.record(forged)
    assert [c.subject for c in queries.consumers(recorder.outbox, PRODUCT)] == ["dana"]


def test_a_forged_derivation_adds_no_derived_product(recorder: LineageRecorder) -> None:
    hidden, product = naming.product_dataset(HIDDEN), naming.product_dataset(PRODUCT)
    recorder.record([mark(_event("civicmesh", "dbt.hr.x", [hidden], [product]), "mallory")])
    recorder.record([mark(_event("evil", "derive", [hidden], [product]), "mallory")])
    graph = load_graph(recorder.outbox)
    assert PRODUCT not in derived_products(graph, resolve(graph, HIDDEN))
    assert derived_products(graph, resolve(graph, PRODUCT)) == {PRODUCT}
