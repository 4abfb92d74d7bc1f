"""Every request is logged before its response leaves; no log, no data (fail closed)."""

from __future__ import annotations

import pytest

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.store import get_engine
from tests.pg import on_both_backends
from tests.store_faults import allow_inserts, refuse_inserts

# Every test here runs on SQLite and on PostgreSQL (tests/pg.py).
server = pytest.fixture(on_both_backends("server"), name="server")

SR = "public_works.service_requests"
BOTH = (
    "{ publicWorks { serviceRequests(first: 2) { nodes { requestId requesterName } } } "
    "environment { airQuality { totalCount } } }"
)


def _log(server) -> AccessLog:
    return AccessLog(get_engine(server.settings.metadata_url))


def test_one_record_per_product_touched(server) -> None:
    log = _log(server)
    before = log.head()
    body = server.gql(BOTH, "bob")
    assert "errors" not in body
    rows = list(log.rows(after_seq=before))
    assert [r["seq"] for r in rows] == [before + 1, before + 2]
    assert len({r["request_id"] for r in rows}) == 1
    by_product = {r["product"]: r for r in rows}
    sr = by_product[SR]
    assert sr["subject"] == "bob" and sr["decision"] == "allow" and sr["status"] == 200
    assert sr["rows"] == 2
    assert sr["columns_returned"] == '["request_id","requester_name"]'
    assert "requester_name" in sr["columns_masked"]
    assert sr["snapshot_id"] == body["extensions"]["governance"][SR]["snapshotId"]
    assert sr["policy_version"] and sr["rule"] and sr["operation_hash"]
    assert "Person" not in str(sr)  # never a PII value
    assert by_product["environment.air_quality"]["rows"] == 0  # totalCount only: no rows returned


def test_mixed_requests_each_leave_records_and_the_chain_verifies(server) -> None:
    log = _log(server)
    before = log.head()
    requests = [
        lambda: server.post("{ me { user } }", "alice"),  # catalog only: one request record
        lambda: server.post("{ me { user } }"),  # 401
        # hidden: fails like an unknown field, and leaves a deny record for hr.salaries
        lambda: server.post("{ hr { salaries { totalCount } } }", "mallory"),
        lambda: server.post("{ nope }", "alice"),  # rejected at validation
        lambda: server.post("{ publicWorks { serviceRequests(first: 1) { totalCount } } }", "dana"),
    ]
    statuses = [r().status_code for r in requests]
    assert statuses == [200, 401, 200, 200, 200]
    rows = list(log.rows(after_seq=before))
    assert len({r["request_id"] for r in rows}) == len(requests) == len(rows)
    codes = [r["error_code"] for r in rows]
    assert codes == [None, "UNAUTHENTICATED", "BAD_USER_INPUT", "BAD_USER_INPUT", None]
    assert rows[2]["decision"] == "deny" and rows[2]["product"] == "hr.salaries"
    assert rows[4]["row_filter"] == '{"column":"district","values":["D3"]}'
    assert verify_report(log).first_bad is None


def test_unwritable_log_fails_closed_with_503_and_no_data(server) -> None:
    refuse_inserts(server.settings.metadata_url)
    try:
        for user in ("alice", None):
            response = server.post("{ publicWorks { serviceRequests { nodes { requesterName } } } }", user)
            assert response.status_code == 503
            body = response.json()
            assert body["data"] is None
            assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
            assert "Person" not in response.text
    finally:
        allow_inserts(server.settings.metadata_url)
    assert server.post("{ me { user } }", "alice").status_code == 200
    assert verify_report(_log(server)).first_bad is None


LOG_QUERY = (
    "query($subject: String, $product: String, $after: String) { accessLog(subject: $subject, "
    "product: $product, first: 3, after: $after) { totalCount nodes { seq subject action product decision "
    "errorCode status columnsMasked { column mask } rowFilter { column values } hash prevHash } "
    "pageInfo { hasNextPage endCursor } } }"
)


def test_auditor_reads_the_whole_log_including_401s(server) -> None:
    server.post("{ me { user } }")  # a 401 for the log
    server.gql("{ me { user } }", "alice")  # at least four records, whatever ran before
    server.gql("{ publicWorks { serviceRequests(first: 1) { nodes { requesterName } } } }", "dana")
    body = server.gql(LOG_QUERY, "carol")
    page = body["data"]["accessLog"]
    assert page["totalCount"] >= 2 and len(page["nodes"]) == 3 and page["pageInfo"]["hasNextPage"]
    after = server.gql(LOG_QUERY, "carol", {"after": page["pageInfo"]["endCursor"]})["data"]["accessLog"]
    assert after["nodes"][0]["seq"] == page["nodes"][-1]["seq"] + 1
    dana = server.gql(LOG_QUERY, "carol", {"subject": "dana"})["data"]["accessLog"]["nodes"]
    assert dana and all(n["subject"] == "dana" for n in dana)
    assert dana[0]["rowFilter"] == {"column": "district", "values": ["D3"]}
    unauthenticated = server.gql("{ accessLog(first: 500) { nodes { subject errorCode } } }", "carol")[
        "data"
    ]["accessLog"]["nodes"]
    assert any(n["subject"] is None and n["errorCode"] == "UNAUTHENTICATED" for n in unauthenticated)


def test_owner_audits_only_its_products_and_others_are_forbidden(server) -> None:
    server.gql("{ environment { airQuality { totalCount } } }", "bob")
    nodes = server.gql("{ accessLog(first: 500) { nodes { product } } }", "alice")["data"]["accessLog"][
        "nodes"
    ]
    assert nodes and {n["product"] for n in nodes} == {SR}
    body = server.gql('{ accessLog(product: "environment.air_quality") { totalCount } }', "alice")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = server.gql("{ accessLog { totalCount } }", "mallory")
    assert body["data"]["accessLog"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_reading_the_log_is_logged(server) -> None:
    log = _log(server)
    before = log.head()
    server.gql("{ accessLog(first: 1) { totalCount } }", "carol")
    rows = list(log.rows(after_seq=before))
    assert len(rows) == 1 and rows[0]["action"] == "audit" and rows[0]["subject"] == "carol"


def test_a_forbidden_read_leaves_one_deny_record_with_its_reason(server) -> None:
    log = _log(server)
    before = log.head()
    body = server.gql("{ publicWorks { serviceRequests(first: 1) { totalCount } } }", "carol")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # the auditor reads no rows
    rows = list(log.rows(after_seq=before))
    assert len(rows) == 1
    assert rows[0]["subject"] == "carol" and rows[0]["decision"] == "deny"
    assert rows[0]["product"] == "public_works.service_requests" and rows[0]["error_code"] == "FORBIDDEN"
    assert rows[0]["reason"] and rows[0]["policy_version"]
    assert verify_report(log).first_bad is None


def test_a_nul_character_in_a_logged_name_is_a_4xx_that_is_logged(server) -> None:
    """PostgreSQL refuses NUL in text: a product name with one (an argument, an export URL) made the
    access-log write fail, so the request was a 503 with no record - and, sharing the group
    commit, so were other users' requests. The record keeps the name, NUL as U+FFFD
    (`accesslog.storable`, the one rule for every stored text)."""
    import threading

    log = _log(server)
    before = log.head()
    stop = threading.Event()
    failures: list[int] = []

    def innocent() -> None:  # another user's requests meanwhile, sharing group commits
        while not stop.is_set():
            status = server.post("{ me { user } }", "alice").status_code
            if status != 200:
                failures.append(status)

    thread = threading.Thread(target=innocent)
    thread.start()
    try:
        for _ in range(5):
            forbidden = server.gql(
                "query Q($p: String) { accessLog(product: $p, first: 1) { totalCount } }",
                "carol",
                {"p": "x\0y"},
            )
            assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            export = server.client.get(
                "/exports/pub%00lic.csv", headers={"Authorization": f"Bearer {server.token('bob')}"}
            )
            assert 400 <= export.status_code < 500, export.text
    finally:
        stop.set()
        thread.join()
    assert failures == []
    rows = [r for r in log.rows(after_seq=before) if r["subject"] in ("carol", "bob")]
    assert {r["product"] for r in rows} >= {"x\ufffdy"}
    assert len(rows) == 10 and verify_report(log).first_bad is None
