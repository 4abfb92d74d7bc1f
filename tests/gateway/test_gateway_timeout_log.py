"""A query interrupted by the timeout is refused with LIMIT_EXCEEDED, over real HTTP, and still
leaves exactly one access-log record in an unbroken chain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.settings import Settings
from meshcore.store import dispose_all
from tests.gateway.conftest import SERVICE_REQUESTS, Server, publish

# Enough rows that a distinct count per group takes far longer than the timeout.
BIG_SQL = (
    "SELECT 'SR-' || i AS request_id, TIMESTAMP '2026-01-01' + INTERVAL (i) SECOND AS created_at, "
    "['pothole','graffiti','streetlight'][1 + i % 3] AS category, 'D' || (1 + i % 9) AS district, "
    "CAST(i % 4 + 1 AS INTEGER) AS priority, i / 2.0 AS response_hours, DATE '2026-02-01' AS closed_on, "
    "'Person ' || i AS requester_name, 'p' || i || '@x.example' AS requester_email, "
    "'555-' || i AS requester_phone, i || ' Main St' AS address, 52.0 + i / 1e7 AS latitude "
    "FROM range(3000000) t(i)"
)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("timeout_home")
    settings = Settings.for_home(
        home,
        extra={"query_timeout_s": "0.005"},
    )
    settings.ensure_dirs()
    publish(settings, SERVICE_REQUESTS, BIG_SQL)
    server = Server(settings)
    server.start()
    yield server
    server.stop()
    dispose_all()


def test_a_timed_out_query_is_refused_and_logged(slow_server: Server) -> None:
    log = AccessLog.from_settings(slow_server.settings)
    before = log.head()
    body = slow_server.gql(
        "{ publicWorks { serviceRequestsAggregate(groupBy: [REQUEST_ID]) "
        "{ groups { count d: countDistinct(column: RESPONSE_HOURS) } } } }",
        "alice",
    )
    assert body["errors"][0]["extensions"]["code"] == "LIMIT_EXCEEDED", body
    assert "longer than" in body["errors"][0]["message"]
    rows = list(log.rows(after_seq=before))
    assert len(rows) == 1
    assert rows[0]["subject"] == "alice" and rows[0]["error_code"] == "LIMIT_EXCEEDED"
    assert verify_report(log).first_bad is None
