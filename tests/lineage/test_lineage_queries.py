"""Audit queries over stored events, and the shape checks on events from other producers (the
rules on what they may state: test_lineage_receiver.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from ol_scenario import record_a_build_and_reads

from lineage import events, naming, queries
from lineage.graph import DATASET, LineageGraph, Node
from lineage.receiver import InvalidEvent, accept, check_event
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings
from meshcore.store import dispose_all

PRODUCT = "public_works.service_requests"


@pytest.fixture
def recorder(settings: Settings) -> Iterator[LineageRecorder]:
    record_a_build_and_reads(settings)
    yield LineageRecorder.from_settings(settings)
    dispose_all()


def test_consumers_of_a_product_in_a_period(recorder: LineageRecorder) -> None:
    (dana,) = queries.consumers(recorder.outbox, PRODUCT)
    assert (dana.subject, dana.job, dana.reads, dana.rows) == ("dana", "consumer.dana.read", 1, 3)
    assert dana.columns == ("district",) and dana.snapshots == ("snap-1",)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    assert queries.consumers(recorder.outbox, PRODUCT, since=tomorrow) == []
    assert queries.consumers(recorder.outbox, "public_works.other") == []


def test_runs_and_versions(recorder: LineageRecorder) -> None:
    (run,) = queries.runs(recorder.outbox, f"publish.{PRODUCT}")
    assert run.state == "COMPLETE" and run.started and run.ended
    assert run.parent_run_id == "3c0c6a4e-1f2b-4b8e-9d1a-2f3e4d5c6b7a"
    (version,) = queries.dataset_versions(recorder.outbox, PRODUCT)
    assert version["version"] == "snap-1" and version["rowCount"] == 10


def _external_event() -> dict:
    (event,) = events.lifecycle(
        run_id=events.new_run_id(),
        parent=None,
        job=events.make_job(naming.JobRef("billing.export", "finance-etl"), "JOB"),
        inputs=[events.input_dataset(naming.product_dataset(PRODUCT))],
        outputs=[events.output_dataset(naming.DatasetRef("s3://city-finance", "exports/sr.csv"))],
        include_start=False,
    )
    return events.to_dict(event)


def test_external_events_are_stored_and_join_the_graph(recorder: LineageRecorder) -> None:
    (uid,) = recorder.record([accept(_external_event(), "airflow", lambda namespace, name: False)])
    assert uid in [e.event_uid for e in recorder.outbox.pending("file")]
    graph = LineageGraph.from_events(e.as_dict() for e in recorder.outbox.events())
    down = graph.walk(Node(DATASET, "civicmesh://local", PRODUCT), "downstream", 2)
    assert "exports/sr.csv" in {n.name for n in down.nodes}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e.pop("job"), "run and job are required"),
        (lambda e: e["run"].update(runId="42"), "runId must be a UUID"),
        (lambda e: e.update(eventTime="yesterday"), "ISO 8601"),
        (lambda e: e.update(eventTime="2026-11-27T06:00:00"), "time zone"),
        (lambda e: e.update(eventType="DONE"), "eventType"),
        (lambda e: e["outputs"][0].pop("name"), r"outputs\[0\].name"),
    ],
)
def test_malformed_external_events_are_refused(mutate, message: str) -> None:
    event = _external_event()
    mutate(event)
    with pytest.raises(InvalidEvent, match=message):
        check_event(event)


def test_only_one_json_object_is_an_event() -> None:
    for body in ([], "event", None, [_external_event()]):
        with pytest.raises(InvalidEvent, match="one JSON object"):
            check_event(body)
