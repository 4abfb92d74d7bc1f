"""`accessLog(...)` over archived records (issue 16, item 3): a period reaching into the archive is
refused with BAD_USER_INPUT naming the archived span, never answered from the store alone as if it
were the whole history; a period after it is answered as before."""

from __future__ import annotations

from datetime import datetime, timedelta

from meshcore.audit.archive import read_segments
from meshcore.audit.archiving import archive_sealed
from meshcore.audit.sealing import Sealer, open_log

LOG_QUERY = (
    "query($since: DateTime) { accessLog(since: $since, first: 500) "
    "{ totalCount nodes { seq subject errorCode } } }"
)


def test_a_period_reaching_into_the_archive_is_refused(server) -> None:
    for _ in range(3):
        assert "errors" not in server.gql(
            "{ publicWorks { serviceRequests(first: 1) { totalCount } } }", "bob"
        )
    log = open_log(server.settings)
    sealer = Sealer(log)
    sealer.checkpoint("count")
    sealer.detach()
    server.gql("{ me { user } }", "bob")  # the head stays in the store: one record after the seal
    assert server.gql(LOG_QUERY, "carol")["data"]["accessLog"]["totalCount"] > 0
    [segment] = archive_sealed(log).segments

    refused = server.gql(LOG_QUERY, "carol")
    assert refused["data"]["accessLog"] is None
    [error] = refused["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"records 1..{segment.last_seq} of the access log" in error["message"]
    assert "archived" in error["message"]
    older = (datetime.fromisoformat(segment.max_ts) - timedelta(seconds=1)).isoformat()
    assert server.gql(LOG_QUERY, "carol", {"since": older})["data"]["accessLog"] is None

    after = datetime.fromisoformat(read_segments(log.archive_dir)[-1].max_ts) + timedelta(microseconds=1)
    page = server.gql(LOG_QUERY, "carol", {"since": after.isoformat()})["data"]["accessLog"]
    seqs = [n["seq"] for n in page["nodes"]]
    assert seqs and min(seqs) > segment.last_seq
    assert "BAD_USER_INPUT" in [n["errorCode"] for n in page["nodes"]]  # the refusals were logged


def test_readers_of_derived_over_an_archived_period_is_refused(server) -> None:
    """Runs after the test above has archived: the default period (from the beginning) reaches in."""
    log = open_log(server.settings)
    assert read_segments(log.archive_dir), "the test above archives first"
    body = server.gql(
        "query($p: String!) { readersOfDerived(product: $p) { subject reads } }",
        "carol",
        {"p": "public_works.service_requests"},
    )
    assert body["data"]["readersOfDerived"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "archived" in error["message"]
