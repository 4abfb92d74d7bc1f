"""Trust boundaries of lineage (issue 11, items 1-2), as attacks over real uvicorn HTTP:

- lineage ingest is the `produce_lineage` right: staff who hold every other right are refused;
- a producer may not forge civicmesh's own lineage: a publish, a read, a derivation (refused, each
  with one record, and the answers of `lineage` and `readersOfDerived` are unchanged);
- redaction is no oracle: a guessed job or product name that exists and one that does not are
  redacted alike;
- reader identities are audit data, and server file paths are shown only to callers with `audit`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lineage import naming
from lineage.facets import ACCESS_FACET, INGEST_FACET
from lineage.outbox import Outbox
from meshcore.accesslog import AccessLog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine
from tests.gateway.conftest import (
    AIR_QUALITY,
    SALARIES,
    SERVICE_REQUESTS,
    SERVICE_REQUESTS_SQL,
    Server,
    publish,
)

SR, AIR, HR = SERVICE_REQUESTS.name, AIR_QUALITY.name, SALARIES.name
SUMMARY = ProductSpec(
    department="city_ops",
    product="summary",
    classification="public",
    owner="olivia@city.example",
    description="A public product built from public and hidden inputs.",
    columns=(ColumnSpec("n", "bigint"),),
    model_unique_id="model.city_ops.summary",
)
HOME = "/srv/civicmesh"  # the server paths of the recorded build below
WAREHOUSE = naming.duckdb_namespace(f"{HOME}/warehouse.duckdb")
LANDING = f"{HOME}/landing/environment/air_quality.csv"
LINEAGE = """query($p: String!, $d: LineageDirection!) { lineage(product: $p, direction: $d, depth: 6) {
  root nodes { id kind namespace name redacted } edges { from to } } }"""
DERIVED = "query($p: String!) { readersOfDerived(product: $p) { subject product } }"


def _dataset(namespace: str, name: str) -> dict[str, str]:
    return {"namespace": namespace, "name": name}


def _product(name: str) -> dict[str, str]:
    ref = naming.product_dataset(name)
    return _dataset(ref.namespace, ref.name)


def _event(namespace: str, job: str, inputs: list[dict], outputs: list[dict]) -> dict[str, Any]:
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-01-01T00:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": namespace, "name": job},
        "inputs": inputs,
        "outputs": outputs,
        "producer": "https://etl.city.example",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }


def _build_events() -> list[dict[str, Any]]:
    """What civicmesh's own build records (written to the outbox, as a build writes them)."""
    raw, mart = (
        _dataset(WAREHOUSE, "warehouse.raw.air_quality"),
        _dataset(WAREHOUSE, "warehouse.main.air_quality"),
    )
    sr_mart = _dataset(WAREHOUSE, "warehouse.main_public_works.service_requests")
    return [
        _event("civicmesh", "ingest.raw.air_quality", [_dataset("file", LANDING)], [raw]),
        _event("civicmesh", "dbt.environment.air_quality", [raw], [mart]),
        _event("civicmesh", f"publish.{AIR}", [mart], [_product(AIR)]),
        _event("civicmesh", f"publish.{SR}", [sr_mart], [_product(SR)]),
        # a public product built from a visible product, a hidden one that exists, one that does not
        _event(
            "civicmesh",
            "dbt.city_ops.summary",
            [_product(AIR), _product(HR), _product("hr.ghost")],
            [_product(SUMMARY.name)],
        ),
        _event("civicmesh", f"publish.{HR}", [mart], [_product(HR)]),
        _event("civicmesh", "publish.hr.ghost", [mart], [_product("hr.ghost")]),
    ]


@pytest.fixture(scope="module")
def trust_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("trust_home")
    settings = Settings.for_home(home)
    settings.ensure_dirs()
    publish(settings, SERVICE_REQUESTS, SERVICE_REQUESTS_SQL)
    publish(
        settings,
        AIR_QUALITY,
        "SELECT CAST(i AS INTEGER) AS reading_id, 'S1' AS station, 1.5 AS pm25 FROM range(3) t(i)",
    )
    publish(settings, SALARIES, "SELECT CAST(1 AS INTEGER) AS employee_id, 1.0 AS salary")
    publish(settings, SUMMARY, "SELECT CAST(1 AS BIGINT) AS n")
    Outbox(get_engine(settings.metadata_url)).ensure_schema().append(_build_events())
    server = Server(settings)
    server.start()
    yield server
    server.stop()
    dispose_all()


def _post(server: Server, user: str, event: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    return server.client.post("/api/v1/lineage", json=event, headers=headers)


def _one_record(server: Server, send: Any) -> tuple[httpx.Response, dict[str, Any]]:
    log = AccessLog.from_settings(server.settings)
    before = log.head()
    response = send()
    (record,) = log.rows(after_seq=before)
    assert record["action"] == "lineage_ingest" and record["status"] == response.status_code
    return response, record


def _lineage(server: Server, user: str, product: str, direction: str) -> dict[str, Any]:
    body = server.gql(LINEAGE, user, {"p": product, "d": direction})
    assert "errors" not in body, body
    return body["data"]["lineage"]


def _names(result: dict[str, Any]) -> set[str]:
    return {n["name"] for n in result["nodes"]}


# -- item 1: lineage ingest is a privilege ---------------------------------------------------------

REPORT = _event("city-etl", "report", [_product(AIR)], [_dataset("file", "/exchange/report.csv")])


@pytest.mark.parametrize("user", ["mallory", "alice", "carol", "frank"])
def test_staff_without_produce_lineage_cannot_write_lineage(trust_server: Server, user: str) -> None:
    response, record = _one_record(trust_server, lambda: _post(trust_server, user, REPORT))
    assert response.status_code == 403 and response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (
        record["decision"] == "deny" and record["subject"] == user and "produce_lineage" in record["reason"]
    )


def test_a_producer_writes_its_own_lineage_marked_external(trust_server: Server) -> None:
    response, record = _one_record(trust_server, lambda: _post(trust_server, "airflow", REPORT))
    assert response.status_code == 201, response.text
    uid = response.json()["uid"]
    assert record["decision"] == "allow" and uid in record["reason"]
    assert record["rule"] == "p, lineage_producer, global, *, produce_lineage"
    (stored,) = [
        e.as_dict()
        for e in Outbox(get_engine(trust_server.settings.metadata_url)).events()
        if e.event_uid == uid
    ]
    facet = stored["run"]["facets"][INGEST_FACET]
    assert facet["submittedBy"] == "airflow" and facet["external"] is True
    assert "report" in _names(_lineage(trust_server, "carol", AIR, "DOWNSTREAM"))


def _forged_read() -> dict[str, Any]:
    event = _event("city-etl", "consumer.alice.read", [_product(HR)], [])
    event["run"]["facets"] = {ACCESS_FACET: {"subject": "alice", "rowsReturned": 9}}
    return event


FORGERIES = {
    "a publish in civicmesh's namespace": _event(
        "civicmesh", f"publish.{SR}", [_dataset("file", "/evil.csv")], [_product(SR)]
    ),
    "a publish from its own namespace": _event(
        "city-etl", "publish", [_dataset("file", "/evil.csv")], [_product(SR)]
    ),
    "a write into a warehouse table": _event(
        "city-etl",
        "overwrite",
        [_dataset("file", "/evil.csv")],
        [_dataset(WAREHOUSE, "warehouse.main.air_quality")],
    ),
    "a read in civicmesh's namespace": _event("civicmesh", "consumer.alice.read", [_product(HR)], []),
    "a read with an access facet": _forged_read(),
    "a derivation": _event("city-etl", "derive", [_product(HR)], [_product(SR)]),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_producer_cannot_forge_civicmesh_lineage(trust_server: Server, name: str) -> None:
    srv = trust_server
    upstream_before = _lineage(srv, "carol", SR, "UPSTREAM")
    readers_before = srv.gql(DERIVED, "carol", {"p": HR})
    response, record = _one_record(srv, lambda: _post(srv, "airflow", FORGERIES[name]))
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert record["decision"] == "deny" and record["error_code"] == "FORBIDDEN"
    assert (
        record["rule"] == "p, lineage_producer, global, *, produce_lineage"
    )  # the right held; the event not
    assert _lineage(srv, "carol", SR, "UPSTREAM") == upstream_before
    assert srv.gql(DERIVED, "carol", {"p": HR}) == readers_before
    assert "alice" not in json.dumps(srv.gql(DERIVED, "carol", {"p": HR}))


def _look_alike_read(namespace: str, reader: str) -> dict[str, Any]:
    event = _event(namespace, f"consumer.{reader}.read", [_product(AIR)], [])
    event["job"]["facets"] = {"jobType": {"jobType": "READ", "integration": "X", "processingType": "BATCH"}}
    return event


LOOK_ALIKES = {
    "civicmesh in capitals": _look_alike_read("Civicmesh", "frank"),
    "a Cyrillic i": _look_alike_read("civ\u0456cmesh", "frank"),
    "a trailing space": _look_alike_read("civicmesh ", "frank"),
    "a zero-width space": _look_alike_read("civicmesh\u200b", "frank"),
    "a bidi override in the job name": _event("city-etl", "consumer.\u202edaer.knarf", [_product(AIR)], []),
    "a product output in capitals": _event(
        "city-etl", "publish", [_dataset("file", "/evil.csv")], [_dataset("CIVICMESH://LOCAL", SR)]
    ),
    "a warehouse table by its legacy path": _event(
        "city-etl",
        "overwrite",
        [_dataset("file", "/evil.csv")],
        [_dataset(f"duckdb://{HOME}/warehouse.duckdb", "warehouse.main.air_quality")],
    ),
}


@pytest.mark.parametrize("name", list(LOOK_ALIKES))
def test_a_look_alike_of_civicmesh_lineage_is_refused(trust_server: Server, name: str) -> None:
    """Break 11: `Civicmesh`, `civicmesh` with a Cyrillic i, a trailing space or a zero-width space were
    accepted as job namespaces, so a forged `consumer.frank.read` showed in `lineage` exactly like
    a reader civicmesh recorded; outputs named `CIVICMESH://LOCAL/...` or by a legacy warehouse path
    were accepted too. Each is refused with one record, and no one sees the forgery."""
    srv = trust_server
    upstream_before = _lineage(srv, "carol", SR, "UPSTREAM")
    response, record = _one_record(srv, lambda: _post(srv, "airflow", LOOK_ALIKES[name]))
    assert response.status_code in (400, 403), response.text
    assert record["error_code"] == response.json()["errors"][0]["extensions"]["code"]
    downstream = json.dumps(_lineage(srv, "carol", AIR, "DOWNSTREAM"))
    assert "frank" not in downstream and "knarf" not in downstream
    assert _lineage(srv, "carol", SR, "UPSTREAM") == upstream_before


def test_an_external_job_between_two_products_derives_no_readers(trust_server: Server) -> None:
    """Break 11: an external job that reads service_requests and writes the landing file air_quality is
    ingested from (a dataset civicmesh only reads, so the event is its producer's to state) put
    every reader of air_quality into `readersOfDerived(service_requests)`. Audit answers follow only
    the jobs civicmesh recorded; the external job stays visible in `lineage`, as its producer's."""
    srv = trust_server
    srv.gql("{ environment { airQuality { nodes { station } } } }", "bob")
    assert "bob" in json.dumps(srv.gql(DERIVED, "carol", {"p": AIR}))  # bob did read air_quality
    event = _event("city-etl", "extract", [_product(SR)], [_dataset("file", LANDING)])
    response, _ = _one_record(srv, lambda: _post(srv, "airflow", event))
    assert response.status_code == 201, response.text
    readers = srv.gql(DERIVED, "carol", {"p": SR})
    assert "errors" not in readers, readers
    assert {r["product"] for r in readers["data"]["readersOfDerived"]} <= {SR}, readers
    assert "extract" in _names(_lineage(srv, "carol", SR, "DOWNSTREAM"))


# -- item 2: redaction is no oracle; readers and paths are audit data -----------------------------


def test_a_hidden_name_that_exists_and_one_that_does_not_are_redacted_alike(trust_server: Server) -> None:
    result = _lineage(trust_server, "mallory", SUMMARY.name, "UPSTREAM")
    text = json.dumps(result)
    assert "hr." not in text and "ghost" not in text and "salar" not in text
    redacted = [n for n in result["nodes"] if n["redacted"]]
    # hr.salaries and hr.ghost, and the publish job of each: two datasets and two jobs, unnamed
    assert sorted(n["kind"] for n in redacted) == ["dataset", "dataset", "job", "job"]
    assert {n["name"] for n in redacted} == {"(redacted)"}


def test_readers_are_shown_only_to_who_audits_the_product(trust_server: Server) -> None:
    srv = trust_server
    srv.gql("{ environment { airQuality { nodes { station } } } }", "bob")
    for user in ("erin", "mallory"):  # lineage on a public product, no audit
        result = _lineage(srv, user, AIR, "DOWNSTREAM")
        text = json.dumps(result)
        assert "consumer." not in text and "bob" not in text, text
        assert not any(n["redacted"] for n in result["nodes"])  # removed, not a placeholder
    assert "consumer.bob.read" in _names(_lineage(srv, "carol", AIR, "DOWNSTREAM"))


def test_server_paths_are_shown_only_to_who_audits_the_product(trust_server: Server) -> None:
    srv = trust_server
    for user in ("erin", "mallory"):
        result = _lineage(srv, user, AIR, "UPSTREAM")
        text = json.dumps(result)
        assert HOME not in text, text
        assert "air_quality.csv" in _names(result)
        assert {n["namespace"] for n in result["nodes"] if n["name"].startswith("warehouse.")} == {WAREHOUSE}
    carol = _lineage(srv, "carol", AIR, "UPSTREAM")
    assert LANDING in _names(carol) and HOME in json.dumps(carol)


@pytest.mark.parametrize("user", ["mallory", "airflow"])
def test_posting_guessed_names_tells_nothing_about_what_exists(trust_server: Server, user: str) -> None:
    """Issue 11: posting guessed job names and watching which came back redacted told a no-role user
    which hidden products exist. Now a guess that exists (hr.salaries) and one that does not
    (hr.nobody) get the same answer, whoever posts them and however they are named."""
    for make in (
        lambda name: _event("civicmesh", f"publish.{name}", [_product(AIR)], [_product(name)]),
        lambda name: _event("city-etl", f"publish.{name}", [_product(AIR)], [_product(name)]),
        lambda name: _event(
            "city-etl", f"dbt.{name}", [_product(AIR), _product(name)], [_dataset("file", "/x")]
        ),
    ):
        answers = []
        for name in (HR, "hr.nobody"):
            response = _post(trust_server, user, make(name))
            body = response.json()
            answers.append(
                (response.status_code, sorted(body), json.dumps(body.get("errors")).replace(name, "?"))
            )
        assert answers[0] == answers[1], answers
    # what the graph then shows a no-role user: both guesses alike (an external job is named as sent)
    nodes = {n["name"]: n for n in _lineage(trust_server, "mallory", AIR, "DOWNSTREAM")["nodes"]}
    if user == "airflow":
        shown = (nodes[f"dbt.{HR}"], nodes["dbt.hr.nobody"])
        assert [(n["kind"], n["redacted"]) for n in shown] == [("job", False), ("job", False)]
