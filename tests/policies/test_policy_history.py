"""Rights as of any date: `civicmesh policy explain|who-can --at DATE` give the answer that was
correct then — before and after a grant, after a policy change, after a revocation — and name the
chained change that made the difference (issue 12, acceptance 2)."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from policy_specs import DEMO_PRODUCTS, manifest_for
from served import Served, publish

from civicmesh.cli import main
from meshcore.accesslog import AccessLog
from meshcore.audit.sealing import open_log
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies.engine import PolicyEngine
from policies.grants import AccessRequests

EMPLOYEES = DEMO_PRODUCTS["hr.employees"]
COLLISIONS = DEMO_PRODUCTS["transportation.collisions"]


@dataclass
class Story:
    settings: Settings
    manifest: Path
    start: datetime  # the first policy is loaded
    granted: datetime  # mallory's grant to read hr.employees is approved
    changed: datetime  # the policy makes mallory a transportation analyst
    revoked: datetime  # the grant is revoked
    grant_id: int


def _moment() -> datetime:
    time.sleep(0.01)  # records stamped before this moment sort before it
    moment = datetime.now(UTC)
    time.sleep(0.01)
    return moment


@pytest.fixture
def story(home: Settings, policy_dir: Path, tmp_path: Path) -> Story:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))
    log = open_log(home)
    engine = PolicyEngine.load(home, check_interval=None, audit_log=log, serving=True)
    start = _moment()
    store = AccessRequests(engine, get_engine(home.metadata_url), access_log=log)
    request = store.request("mallory", EMPLOYEES, "read", "pay equity review", 30)
    store.approve(request.id, "frank")
    granted = _moment()
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("g, mallory, analyst, transportation\n")
    assert engine.refresh_if_changed() is True
    changed = _moment()
    store.revoke(request.id, "frank")
    revoked = _moment()
    return Story(home, manifest, start, granted, changed, revoked, request.id)


def _explain(
    capsys: pytest.CaptureFixture[str], story: Story, product: str, action: str, at: datetime
) -> str:
    code = main(
        [
            "policy",
            "explain",
            "mallory",
            product,
            action,
            "--at",
            at.isoformat(),
            "--manifest",
            str(story.manifest),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_explain_at_before_and_after_a_grant_and_its_revocation(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _explain(capsys, story, EMPLOYEES.name, "read", story.start)
    assert "DENY  mallory read hr.employees" in before
    assert "changed by: nothing since the first recorded policy" in before
    during = _explain(capsys, story, EMPLOYEES.name, "read", story.granted)
    assert "ALLOW  mallory read hr.employees" in during
    assert f"[access request #{story.grant_id}]" in during
    assert f"grants in force: access request #{story.grant_id}" in during
    assert f"access request #{story.grant_id}: mallory read hr.employees; valid until" in during
    assert "(approved by frank)" in during
    after = _explain(capsys, story, EMPLOYEES.name, "read", story.revoked)
    assert "DENY  mallory read hr.employees" in after and "(revoked by frank)" in after
    assert "grants in force" not in after


def test_explain_at_after_a_policy_change_names_the_line(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _explain(capsys, story, COLLISIONS.name, "export", story.granted)
    assert "DENY  mallory export transportation.collisions" in before
    after = _explain(capsys, story, COLLISIONS.name, "export", story.changed)
    assert "ALLOW  mallory export transportation.collisions" in after
    assert "rule:    p, analyst, transportation, *, export" in after
    assert (
        "changed by: access log seq" in after and "+ policy.csv: g, mallory, analyst, transportation" in after
    )
    now = _explain(capsys, story, COLLISIONS.name, "export", datetime.now(UTC))  # unchanged since
    assert "ALLOW" in now and "+ policy.csv: g, mallory, analyst, transportation" in now


def test_who_can_at(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    def who(at: datetime) -> set[str]:
        argv = [
            "policy",
            "who-can",
            EMPLOYEES.name,
            "read",
            "--at",
            at.isoformat(),
            "--manifest",
            str(story.manifest),
        ]
        assert main(argv) == 0
        return {line.split()[0] for line in capsys.readouterr().out.splitlines()}

    assert who(story.start) == {"frank"}
    assert who(story.granted) == {"frank", "mallory"}
    assert who(story.revoked) == {"frank"}


def test_no_answer_rather_than_a_wrong_one(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    m = ["--manifest", str(story.manifest)]
    long_ago = (story.start - timedelta(days=365)).isoformat()
    assert main(["policy", "explain", "mallory", EMPLOYEES.name, "read", "--at", long_ago, *m]) == 1
    assert "no policy was recorded as loaded" in capsys.readouterr().err
    db = story.settings.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:  # the grant's expiry edited after the fact
        raw.execute("UPDATE access_requests SET expires_at = '2099-01-01 00:00:00.000000'")
    assert (
        main(["policy", "explain", "mallory", EMPLOYEES.name, "read", "--at", story.granted.isoformat(), *m])
        == 1
    )
    assert "no longer matches its approval" in capsys.readouterr().err


RIGHTS = """
query R($subject: String!, $at: DateTime!) {
  rightsAsOf(subject: $subject, at: $at) {
    subject policyVersion policySeq grants
    rights { product action rule source maskedColumns changedBy { seq ts description } }
  }
}
"""


def test_rights_as_of_in_graphql_for_auditors(story: Story) -> None:
    publish(story.settings, DEMO_PRODUCTS.values())
    server = Served(story.settings)
    try:

        def rights(user: str, at: datetime) -> dict:
            return server.gql(user, RIGHTS, {"subject": "mallory", "at": at.isoformat()})

        then = rights("carol", story.granted)["data"]["rightsAsOf"]
        assert then["grants"] == [story.grant_id]
        held = {(r["product"], r["action"]): r for r in then["rights"]}
        read = held[(EMPLOYEES.name, "read")]
        assert read["source"] == f"access request #{story.grant_id}" and "salary" in read["maskedColumns"]
        assert "(approved by frank)" in read["changedBy"]["description"] and read["changedBy"]["seq"]
        assert (COLLISIONS.name, "export") not in held
        later = {
            (r["product"], r["action"])
            for r in rights("carol", story.revoked)["data"]["rightsAsOf"]["rights"]
        }
        assert (EMPLOYEES.name, "read") not in later and (COLLISIONS.name, "export") in later
        denied = rights("mallory", story.granted)  # holds the audit right nowhere
        assert (
            denied["data"]["rightsAsOf"] is None and denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        )
        early = rights("carol", story.start - timedelta(days=1))
        assert early["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "no policy was recorded" in early["errors"][0]["message"]
    finally:
        server.stop()
    audits = [r for r in AccessLog(get_engine(story.settings.metadata_url)).rows() if r["subject"] == "carol"]
    assert [r["action"] for r in audits] == ["audit", "audit", "audit"]  # every question is logged


SR = DEMO_PRODUCTS["public_works.service_requests"]
PAYMENTS = DEMO_PRODUCTS["finance.vendor_payments"]
READ_SR = (
    "query Q($t: DateTime) { publicWorks { "
    "serviceRequests(asOf: $t, first: 5) { nodes { requesterName } } } }"
)
READ_PAYMENTS = (
    "query Q($t: DateTime) { finance { vendorPayments(asOf: $t, first: 5) { nodes { vendor } } } }"
)


def test_reading_as_of_applies_the_rights_then_only_if_stricter(home: Settings) -> None:
    publish(home, [SR, PAYMENTS])
    server = Served(home)  # loads (and records) the policy
    try:
        before_grants = _moment()
        log = open_log(home)
        engine = PolicyEngine.load(home, check_interval=None, audit_log=log)
        store = AccessRequests(engine, get_engine(home.metadata_url), access_log=log)
        for product, action, owner in ((SR, "read_pii", "alice"), (PAYMENTS, "read", "fiona")):
            store.approve(store.request("bob", product, action, "case 42", 30).id, owner)

        def read(query: str, at: datetime | None) -> dict:
            return server.gql("bob", query, {"t": at.isoformat() if at else None})

        deadline = time.monotonic() + 60  # the gateway picks grants up within its refresh interval
        while "requester_name" in read(READ_SR, None)["extensions"]["governance"][SR.name]["maskedColumns"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        then = read(READ_SR, before_grants)  # bob held no read_pii then: masked as then
        governance = then["extensions"]["governance"][SR.name]
        assert {"requester_name", "requester_email", "requester_phone"} <= set(governance["maskedColumns"])
        assert governance["asOf"]["applied"] == [
            "requester_email masked (hash) as then",
            "requester_name masked (redact) as then",
            "requester_phone masked (partial) as then",
        ]
        denied = read(READ_PAYMENTS, before_grants)  # confidential, no grant then: denied as then
        assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "at that time" in denied["errors"][0]["message"]
        assert "errors" not in read(READ_PAYMENTS, None)  # today's grant allows it
        now = read(READ_SR, datetime.now(UTC))  # then == now: nothing stricter
        assert now["extensions"]["governance"][SR.name]["asOf"]["applied"] == []
    finally:
        server.stop()


def _cursor(snapshot_id: str) -> str:
    """A cursor as the gateway encodes one (base64 JSON, unsigned): anyone can write it."""
    import base64

    raw = json.dumps({"s": snapshot_id, "o": 0}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


PAGE_SR = (
    "query Q($t: DateTime, $after: String) { publicWorks { serviceRequests(asOf: $t, after: $after, "
    "first: 5) { nodes { requesterName } snapshot { id } } } }"
)


def test_a_cursor_into_an_old_snapshot_never_escapes_the_rights_then(home: Settings) -> None:
    """Paging an old snapshot with `after` (the cursor of an `asOf` page, or one written by hand:
    cursors are not secret) is reading the past: the rights then apply, whatever `asOf` says."""
    publish(home, [SR])
    server = Served(home)
    try:
        old = server.gql("bob", PAGE_SR)["data"]["publicWorks"]["serviceRequests"]["snapshot"]["id"]
        before_grant = _moment()
        publish(home, [replace(SR, description="Service requests, republished")])  # today's snapshot
        log = open_log(home)
        engine = PolicyEngine.load(home, check_interval=None, audit_log=log)
        store = AccessRequests(engine, get_engine(home.metadata_url), access_log=log)
        store.approve(store.request("bob", SR, "read_pii", "case 42", 30).id, "alice")

        def page(t: datetime | None, after: str | None) -> dict:
            return server.gql("bob", PAGE_SR, {"t": t.isoformat() if t else None, "after": after})

        def masked(t: datetime | None, after: str | None) -> set[str]:
            answer = page(t, after)
            assert "errors" not in answer, answer
            return set(answer["extensions"]["governance"][SR.name]["maskedColumns"])

        deadline = time.monotonic() + 60  # the gateway picks the grant up within its refresh interval
        while "requester_name" in masked(None, None):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "requester_name" in masked(before_grant, None)  # asOf then: masked as then
        assert "requester_name" in masked(before_grant, _cursor(old))  # the next page, as asked
        assert "requester_name" in masked(None, _cursor(old))  # the old snapshot by cursor alone
        mixed = page(datetime.now(UTC), _cursor(old))  # today's rights over the old snapshot's rows
        assert mixed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", mixed
        assert "requester_name" not in masked(datetime.now(UTC), None)  # today's snapshot, today's grant
    finally:
        server.stop()
