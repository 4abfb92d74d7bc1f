"""`civicmesh snapshots withdraw` over a running gateway (real HTTP): the withdrawn snapshot is gone
from rows, aggregates, exports, `asOf` and cursors; current moves back; the change is chained;
only owners may do it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from civicmesh.cli import main
from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.store import get_engine

POTHOLES = ProductSpec(
    department="public_works",
    product="pothole_repairs",
    classification="internal",
    owner="alice@city.example",
    description="Pothole repairs and what they cost.",
    key="repair_id",
    columns=(ColumnSpec("repair_id", "varchar"), ColumnSpec("cost", "double")),
)
NAME = POTHOLES.name
T0 = datetime(2026, 4, 1, tzinfo=UTC)
ROWS = (
    "{ publicWorks { potholeRepairs%s "
    "{ totalCount nodes { repairId cost } snapshot { id } pageInfo { endCursor } } } }"
)
AGGREGATE = (
    "{ publicWorks { potholeRepairsAggregate%s "
    "{ groups { count total: sum(column: COST) } snapshot { id } } } }"
)


def _sql(n: int, cost: float) -> str:
    return f"SELECT printf('R-%03d', i) AS repair_id, CAST({cost} AS DOUBLE) AS cost FROM range({n}) t(i)"


@pytest.fixture(scope="module")
def history(server, publish_product) -> dict[str, str]:
    """good (5 rows at 10.0, day 0) then bad (3 rows at -2e16, day 1), bad current."""
    catalog = Catalog(get_engine(server.settings.metadata_url))
    good = publish_product(server.settings, POTHOLES, _sql(5, 10.0))
    bad = publish_product(server.settings, POTHOLES, _sql(3, -2.0e16))
    # publish_product stamps "now": move them to fixed days so asOf is deterministic
    from meshcore.catalog import snapshots_table

    with catalog.engine.begin() as conn:
        for snap, day in ((good, 0), (bad, 1)):
            conn.execute(
                snapshots_table.update()
                .where(snapshots_table.c.id == snap.id)
                .values(published_at=T0 + timedelta(days=day))
            )
    return {"good": good.id, "bad": bad.id}


@pytest.fixture
def cli(server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("CIVICMESH_HOME", str(server.settings.home))
    monkeypatch.delenv("CIVICMESH_METADATA_URL", raising=False)
    yield main


def _export(server, user: str, **params: str):
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    return server.client.get(f"/exports/{NAME}.json", params=params, headers=headers)


def _rows(server, args: str = "") -> dict[str, Any]:
    return server.gql(ROWS % args, "alice")


def _wait_for_snapshot(server, expected: str | None, timeout: float = 10.0) -> dict[str, Any]:
    """The gateway polls the catalog: wait until rows come from `expected` (None: no snapshot)."""
    deadline = time.monotonic() + timeout
    while True:
        body = _rows(server)
        page = (body.get("data") or {}).get("publicWorks", {}).get("potholeRepairs")
        seen = page["snapshot"]["id"] if page else None
        if seen == expected or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_withdraw_hides_the_snapshot_from_every_read_path(server, history, cli, capsys) -> None:
    good, bad = history["good"], history["bad"]
    day1 = f'(asOf: "{(T0 + timedelta(days=1, hours=2)).isoformat()}")'
    before = _wait_for_snapshot(server, bad)["data"]["publicWorks"]["potholeRepairs"]
    assert before["totalCount"] == 3
    cursor = server.gql(ROWS % "(first: 1)", "alice")["data"]["publicWorks"]["potholeRepairs"]["pageInfo"]
    assert _export(server, "alice").text.count("\n") == 3
    log = AccessLog(get_engine(server.settings.metadata_url))
    head = log.head()

    assert cli(["snapshots", "withdraw", NAME, "--reason", "costs off by 1e16", "--as", "alice"]) == 0
    assert f"current: {good}" in capsys.readouterr().out

    after = _wait_for_snapshot(server, good)["data"]["publicWorks"]["potholeRepairs"]
    assert after["snapshot"]["id"] == good and after["totalCount"] == 5
    assert {n["cost"] for n in after["nodes"]} == {10.0}
    aggregate = server.gql(AGGREGATE % "", "alice")["data"]["publicWorks"]["potholeRepairsAggregate"]
    assert aggregate == {"groups": [{"count": 5, "total": 50.0}], "snapshot": {"id": good}}
    exported = [json.loads(line) for line in _export(server, "alice").text.splitlines()]
    assert len(exported) == 5 and {r["cost"] for r in exported} == {10.0}
    # asOf a time when the withdrawn snapshot was current: the last good one before it
    as_of = server.gql(ROWS % day1, "alice")["data"]["publicWorks"]["potholeRepairs"]
    assert as_of["snapshot"]["id"] == good
    exported = _export(server, "alice", asOf=(T0 + timedelta(days=1, hours=2)).isoformat())
    assert exported.status_code == 200 and exported.text.count("\n") == 5
    aggregate = server.gql(AGGREGATE % day1, "alice")["data"]["publicWorks"]["potholeRepairsAggregate"]
    assert aggregate["snapshot"]["id"] == good
    # a cursor that was paging through it stops
    body = server.gql(ROWS % f'(first: 1, after: "{cursor["endCursor"]}")', "alice")
    assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert "withdrawn" in body["errors"][0]["message"]

    # the catalog says what happened and why
    listed = server.gql(
        f'{{ product(name: "{NAME}") {{ currentSnapshot {{ id }} '
        "snapshots { id status statusReason current } } }",
        "mallory",
    )["data"]["product"]
    assert listed["currentSnapshot"] == {"id": good}
    assert listed["snapshots"][0] == {
        "id": bad,
        "status": "withdrawn",
        "statusReason": "costs off by 1e16",
        "current": False,
    }
    assert listed["snapshots"][1]["status"] == "published" and listed["snapshots"][1]["current"]

    # in the chain, and the chain is whole
    records = [r for r in log.rows(after_seq=head) if r["action"] == "withdraw"]
    assert [(r["subject"], r["snapshot_id"], r["decision"]) for r in records] == [("alice", bad, "allow")]
    assert cli(["audit", "verify"]) == 0


def test_withdrawing_the_only_snapshot_leaves_nothing_to_serve(server, publish_product, cli) -> None:
    spec = replace(POTHOLES, product="sidewalk_repairs", description="Sidewalk repairs.")
    only = publish_product(server.settings, spec, _sql(2, 1.0)).id
    query = "{ publicWorks { sidewalkRepairs%s { totalCount snapshot { id } } } }"
    deadline = time.monotonic() + 10
    while "errors" in (body := server.gql(query % "", "alice")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the gateway has picked the new product up
    assert body["data"]["publicWorks"]["sidewalkRepairs"]["snapshot"]["id"] == only
    assert cli(["snapshots", "withdraw", spec.name, "--reason", "wrong city", "--as", "alice"]) == 0
    deadline = time.monotonic() + 10
    while "errors" not in (body := server.gql(query % "", "alice")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert body["data"]["publicWorks"]["sidewalkRepairs"] is None
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    assert server.client.get(f"/exports/{spec.name}.csv", headers=headers).status_code == 503
    body = server.gql(query % '(asOf: "2100-01-01T00:00:00Z")', "alice")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # nothing good at or before


@pytest.mark.parametrize("user", ["bob", "carol", "dana", "mallory", "nobody"])
def test_only_owners_may_withdraw_and_a_refusal_is_chained(server, cli, capsys, user: str) -> None:
    catalog = Catalog(get_engine(server.settings.metadata_url))
    name = "public_works.service_requests"
    current = catalog.current(name)
    log = AccessLog(get_engine(server.settings.metadata_url))
    head = log.head()
    assert cli(["snapshots", "withdraw", name, "--reason", "mine now", "--as", user]) == 1
    assert f"{user} may not withdraw snapshots of {name}" in capsys.readouterr().err
    assert catalog.current(name) == current
    [record] = list(log.rows(after_seq=head))
    assert (record["action"], record["subject"], record["decision"], record["status"]) == (
        "withdraw",
        user,
        "deny",
        403,
    )


def test_a_cursor_into_a_snapshot_past_retention_has_expired_and_nothing_is_marked_broken(
    server, publish_product
) -> None:
    from meshcore.catalog import snapshots_table

    spec = replace(POTHOLES, product="curb_repairs", description="Curb repairs.")
    snap = publish_product(server.settings, spec, _sql(4, 2.0))
    query = "{ publicWorks { curbRepairs%s { nodes { repairId } pageInfo { endCursor } } } }"
    deadline = time.monotonic() + 10
    while "errors" in (body := server.gql(query % "(first: 1)", "alice")) and time.monotonic() < deadline:
        time.sleep(0.2)
    cursor = body["data"]["publicWorks"]["curbRepairs"]["pageInfo"]["endCursor"]
    catalog = Catalog(get_engine(server.settings.metadata_url))
    with catalog.engine.begin() as conn:  # what `snapshots gc` does once it is past its grace period
        conn.execute(
            snapshots_table.update()
            .where(snapshots_table.c.id == snap.id)
            .values(removed_at=datetime.now(UTC))
        )
    snap.path.unlink()
    body = server.gql(query % f'(first: 1, after: "{cursor}")', "alice")
    assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
    assert "expired" in body["errors"][0]["message"]
    assert catalog.snapshot(snap.id).broken is None
