"""`Gateway.execute`, the in-process entry point the staff portal reads through: the same answer and
the same access-log records as `POST /graphql`, the same refusals (a stranger is 401 and one
record), and fail closed: when the access log cannot be written, 503 and no data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.auth import Principal
from gateway.errors import GovernedError
from meshcore.accesslog import AccessLog, decode_row
from meshcore.settings import Settings
from meshcore.store import dispose, get_engine
from tests.gateway.conftest import Server
from tests.store_faults import allow_inserts, refuse_inserts

pytestmark = pytest.mark.timeout(180)

QUERY = """
query Requests($category: String!, $first: Int) {
  publicWorks {
    serviceRequests(where: {category: {eq: $category}}, orderBy: [{createdAt: DESC}], first: $first) {
      totalCount
      nodes { requestId createdAt district requesterName requesterEmail address }
      pageInfo { hasNextPage endCursor }
    }
  }
  me { user roles { role department } }
}"""
VARIABLES = {"category": "streetlight", "first": 5}  # every D3 row of the hand-made data
# Fields that differ between any two requests (identity of the record, timing, where it came from).
PER_REQUEST = {"seq", "ts", "hash", "prev_hash", "request_id", "latency_ms", "client"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, gateway_home: Any) -> Iterator[Settings]:
    path = tmp_path_factory.mktemp("inprocess")
    url = f"sqlite:///{path / 'metadata.db'}"
    yield gateway_home(path, url)
    dispose(url)


@pytest.fixture(scope="module")
def http(home: Settings) -> Iterator[Server]:
    server = Server(home)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gateway(home: Settings) -> Iterator[Gateway]:
    gw = Gateway(home)
    yield gw
    gw.close()


def _records(settings: Settings, request_id: str) -> list[dict[str, Any]]:
    log = AccessLog(get_engine(settings.metadata_url))
    return [decode_row(r) for r in log.rows() if r["request_id"] == request_id]


def _execute(gateway: Gateway, user: str, query: str, variables: dict[str, Any] | None, rid: str) -> Any:
    principal = Principal(subject=user, claims={"sub": user})
    return asyncio.run(gateway.execute(principal, query, variables, request_id=rid, client="10.0.0.7"))


def test_in_process_answers_and_records_exactly_like_http(
    home: Settings, http: Server, gateway: Gateway
) -> None:
    response = http.post(QUERY, "dana", VARIABLES)
    assert response.status_code == 200
    over_http = response.json()
    in_process = _execute(gateway, "dana", QUERY, VARIABLES, "inprocess-dana-1")
    assert in_process == over_http
    governance = in_process["extensions"]["governance"]["public_works.service_requests"]
    assert governance["rowFilter"] == {"column": "district", "values": ["D3"]}
    assert {"requesterName", "requesterEmail", "address"} <= set(
        in_process["data"]["publicWorks"]["serviceRequests"]["nodes"][0]
    )
    assert {n["district"] for n in in_process["data"]["publicWorks"]["serviceRequests"]["nodes"]} == {"D3"}

    ours, theirs = _records(home, "inprocess-dana-1"), _records(home, response.headers["x-request-id"])
    assert len(ours) == len(theirs) == 1
    assert ours[0]["client"] == "10.0.0.7"
    assert ours[0]["operation_hash"] is not None
    strip = [{k: v for k, v in r.items() if k not in PER_REQUEST} for r in (ours[0], theirs[0])]
    assert strip[0] == strip[1]
    assert strip[0]["columns_masked"] == {
        "address": "partial",
        "latitude": "generalize",
        "requester_email": "hash",
        "requester_name": "hash",
        "requester_phone": "redact",
    }


def test_field_errors_stay_in_the_answer_and_are_recorded(home: Settings, gateway: Gateway) -> None:
    body = _execute(
        gateway, "mallory", "{ finance { vendorPayments { totalCount } } }", None, "inprocess-mal-1"
    )
    assert body["data"] == {"finance": {"vendorPayments": None}}
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    [record] = _records(home, "inprocess-mal-1")
    assert (record["decision"], record["product"], record["error_code"]) == (
        "deny",
        "finance.vendor_payments",
        "FORBIDDEN",
    )


def test_a_subject_outside_the_directory_is_refused_with_one_record(home: Settings, gateway: Gateway) -> None:
    with pytest.raises(GovernedError) as refused:
        _execute(gateway, "stranger", "{ me { user } }", None, "inprocess-stranger-1")
    assert (refused.value.status, refused.value.code) == (401, "UNAUTHENTICATED")
    [record] = _records(home, "inprocess-stranger-1")
    assert (record["subject"], record["decision"], record["status"], record["error_code"]) == (
        "stranger",
        "deny",
        401,
        "UNAUTHENTICATED",
    )


def test_no_data_when_the_access_log_cannot_be_written(tmp_path: Path, gateway_home: Any) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    settings = gateway_home(tmp_path, url)
    gateway = Gateway(settings)
    try:
        refuse_inserts(url)
        for user in ("dana", "stranger"):
            with pytest.raises(GovernedError) as refused:
                _execute(gateway, user, QUERY, VARIABLES, f"inprocess-down-{user}")
            assert (refused.value.status, refused.value.code) == (503, "UNAVAILABLE")
        allow_inserts(url)
        body = _execute(gateway, "dana", QUERY, VARIABLES, "inprocess-up")
        assert body["data"]["publicWorks"]["serviceRequests"]["totalCount"] > 0
        assert not _records(settings, "inprocess-down-dana") and len(_records(settings, "inprocess-up")) == 1
    finally:
        gateway.close()
        dispose(url)
