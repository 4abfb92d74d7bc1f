"""The lineage join behind `civicmesh audit readers` and GraphQL `readersOfDerived`."""

from __future__ import annotations

import uuid

import pytest

from lineage import naming
from lineage.graph import LineageGraph
from lineage.readers import derived_products, readers_from, resolve, summarise
from meshcore.accesslog import AccessLog, AccessRecord
from meshcore.store import dispose_all, get_engine

SR, SUMMARY, OTHER = "public_works.service_requests", "city_ops.district_summary", "finance.vendor_payments"
WH = "/tmp/civicmesh-test/warehouse.duckdb"


def _event(job: str, inputs: list, outputs: list) -> dict:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "civicmesh", "name": job},
        "inputs": [{"namespace": r.namespace, "name": r.name} for r in inputs],
        "outputs": [{"namespace": r.namespace, "name": r.name} for r in outputs],
    }


def _graph() -> LineageGraph:
    landing = naming.file_dataset("/data/landing/public_works/service_requests.csv")
    raw = naming.duckdb_dataset(WH, "raw.public_works_service_requests")
    mart = naming.duckdb_dataset(WH, "main.service_requests")
    summary_mart = naming.duckdb_dataset(WH, "main.district_summary")
    other_mart = naming.duckdb_dataset(WH, "main.vendor_payments")
    return LineageGraph.from_events(
        [
            _event("ingest.raw", [landing], [raw]),
            _event("dbt.public_works.service_requests", [raw], [mart]),
            _event("publish." + SR, [mart], [naming.product_dataset(SR)]),
            _event("dbt.city_ops.district_summary", [mart], [summary_mart]),
            _event("publish." + SUMMARY, [summary_mart], [naming.product_dataset(SUMMARY)]),
            _event("publish." + OTHER, [other_mart], [naming.product_dataset(OTHER)]),
        ]
    )


def test_every_way_of_naming_the_source_reaches_the_derivatives() -> None:
    graph = _graph()
    for text in (
        SR,
        "/data/landing/public_works/service_requests.csv",
        "file:///data/landing/public_works/service_requests.csv",
        "landing/public_works/service_requests.csv",
        "raw.public_works_service_requests",
        "main.service_requests",
    ):
        assert derived_products(graph, resolve(graph, text)) == {SR, SUMMARY}, text
    assert derived_products(graph, resolve(graph, SUMMARY)) == {SUMMARY}
    assert resolve(graph, "nothing.here") == []


def _row(seq: int, subject: str, product: str, **kw: object) -> dict:
    row = {
        "seq": seq,
        "ts": f"2026-01-0{seq}T00:00:00.000000Z",
        "request_id": f"r{seq}",
        "subject": subject,
        "action": "read",
        "product": product,
        "snapshot_id": "snap-1",
        "decision": "allow",
        "rows": 10,
        "columns_masked": {"requester_name": "hash"},
        "row_filter": None,
    }
    row.update(kw)
    return row


ROWS = [
    _row(1, "dana", SR, row_filter={"column": "district", "values": ["D3"]}),
    _row(2, "mallory", SUMMARY, columns_masked={}),
    _row(3, "dana", SR, action="export", rows=5),
    _row(4, "bob", SR, decision="deny", rows=None),
    _row(5, "carol", SR, action="audit"),
]


def test_summary_counts_allowed_reads_and_exports_per_subject_and_product() -> None:
    """The one aggregation behind `civicmesh audit readers` and GraphQL `readersOfDerived`: a denial
    and an `audit` record are not reads."""
    summary = [
        (r.subject, r.product, r.reads, r.rows, r.first, r.last, r.masked_columns) for r in summarise(ROWS)
    ]
    assert summary == [
        ("mallory", SUMMARY, 1, 10, ROWS[1]["ts"], ROWS[1]["ts"], []),
        ("dana", SR, 2, 15, ROWS[0]["ts"], ROWS[2]["ts"], ["requester_name"]),
    ]
    dana = next(r for r in summarise(ROWS) if r.subject == "dana")
    assert dana.actions == {"read", "export"} and dana.row_filters == [
        {"column": "district", "values": ["D3"]}
    ]


@pytest.fixture
def log(metadata_url: str) -> AccessLog:
    yield AccessLog(get_engine(metadata_url)).ensure_schema()
    dispose_all()


def test_join_with_the_stored_log(log: AccessLog) -> None:
    def rec(subject: str, product: str, **kw: object) -> AccessRecord:
        return AccessRecord(
            request_id=uuid.uuid4().hex, action="read", status=200, subject=subject, product=product, **kw
        )

    log.append(
        [
            rec("dana", SR, decision="allow", columns_masked={"requester_name": "hash"}, rows=3),
            rec("mallory", SUMMARY, decision="allow", rows=2),
            rec("bob", SR, decision="deny"),
            rec("erin", OTHER, decision="allow", rows=1),
        ]
    )
    products, readers = readers_from(_graph(), log, "raw.public_works_service_requests")
    assert products == [SUMMARY, SR]
    assert [(r.product, r.subject, r.masks) for r in readers] == [
        (SUMMARY, "mallory", {}),
        (SR, "dana", {"requester_name": "hash"}),
    ]
    # A caller who may audit only SR is shown SR alone: the summary is neither shown nor named.
    products, readers = readers_from(
        _graph(), log, "raw.public_works_service_requests", may_audit=lambda name: name == SR
    )
    assert products == [SR]
    assert [(r.product, r.subject) for r in readers] == [(SR, "dana")]
