"""Access requests as GraphQL mutations, end to end through real uvicorn HTTP.

Own CIVICMESH home and server (grants change what callers may see, so the shared server's other
tests stay unaffected).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshcore.accesslog import AccessLog
from meshcore.audit.verify import verify_report
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import get_engine

VENDOR_PAYMENTS = ProductSpec(
    department="finance",
    product="vendor_payments",
    classification="confidential",
    owner="fiona@city.example",
    description="Payments to vendors.",
    key="payment_id",
    columns=(
        ColumnSpec("payment_id", "integer", "Payment id"),
        ColumnSpec("vendor", "varchar", "Vendor"),
        ColumnSpec("amount", "double", "Amount"),
    ),
)
SALARIES = ProductSpec(
    department="hr",
    product="salaries",
    classification="restricted",
    owner="frank@city.example",
    description="Staff salaries.",
    key="employee_id",
    columns=(ColumnSpec("employee_id", "integer", "Employee"), ColumnSpec("salary", "double", "Salary")),
)

REQUEST = """
mutation($p: String!, $a: AccessAction!, $purpose: String!, $days: Int!) {
  requestAccess(product: $p, action: $a, purpose: $purpose, days: $days) {
    id subject product department action purpose days state decidedBy expiresAt
  }
}"""
APPROVE = "mutation($id: Int!) { approveAccessRequest(id: $id) { id state decidedBy expiresAt } }"
REJECT = (
    "mutation($id: Int!, $r: String!) { rejectAccessRequest(id: $id, reason: $r) { id state decidedBy } }"
)
REVOKE = "mutation($id: Int!) { revokeAccess(id: $id) { id state revokedBy } }"
LIST = "query($s: AccessRequestState) { accessRequests(status: $s) { id subject product action state } }"
READ_PAYMENTS = "{ finance { vendorPayments { totalCount nodes { vendor } } } }"


@pytest.fixture(scope="module")
def access_server(server, publish_product, tmp_path_factory) -> Iterator[Any]:
    """A server over its own home with a confidential and a restricted product."""
    home = tmp_path_factory.mktemp("access_home")
    settings = Settings.for_home(home, demo_mode=False)
    settings.ensure_dirs()
    publish_product(
        settings,
        VENDOR_PAYMENTS,
        "SELECT CAST(i AS INTEGER) AS payment_id, 'V' || i AS vendor, i * 100.0 AS amount FROM range(5) t(i)",
    )
    publish_product(
        settings,
        SALARIES,
        "SELECT CAST(i AS INTEGER) AS employee_id, 50000.0 + i AS salary FROM range(3) t(i)",
    )
    srv = type(server)(settings)  # the conftest Server class, on this home
    srv.start()
    yield srv
    srv.stop()


def _request(
    srv: Any, user: str, product: str, action: str = "READ", days: int = 7, purpose: str = "x"
) -> dict:
    return srv.gql(REQUEST, user, {"p": product, "a": action, "purpose": purpose, "days": days})


def _error(body: dict) -> dict:
    assert body.get("errors"), body
    return body["errors"][0]


def _log_rows(srv: Any, after: int) -> list[dict]:
    return list(AccessLog(get_engine(srv.settings.metadata_url)).rows(after_seq=after))


def _head(srv: Any) -> int:
    return AccessLog(get_engine(srv.settings.metadata_url)).head()


def _until(check: Any, seconds: float = 5.0) -> Any:
    """Poll `check()` until it returns something truthy, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_request_approve_read_revoke_end_to_end(access_server) -> None:
    srv = access_server
    before = _head(srv)
    # mallory may discover the confidential product (to request it) but not read its rows
    assert _error(srv.gql(READ_PAYMENTS, "mallory"))["extensions"]["code"] == "FORBIDDEN"

    created = _request(srv, "mallory", "finance.vendor_payments", purpose="Vendor audit 2026")
    request = created["data"]["requestAccess"]
    assert request["subject"] == "mallory" and request["department"] == "finance"
    assert request["action"] == "read" and request["state"] == "PENDING" and request["expiresAt"] is None
    rid = request["id"]

    own = srv.gql(APPROVE, "mallory", {"id": rid})  # never the requester
    assert _error(own)["extensions"]["code"] == "FORBIDDEN" and own["data"]["approveAccessRequest"] is None
    erin = srv.gql(APPROVE, "erin", {"id": rid})  # a finance analyst, not an owner: a stranger to it
    assert _error(erin)["extensions"]["code"] == "BAD_USER_INPUT"
    assert _error(erin)["message"] == "No such access request."

    approved = srv.gql(APPROVE, "fiona", {"id": rid})["data"]["approveAccessRequest"]
    assert approved["state"] == "ACTIVE" and approved["decidedBy"] == "fiona" and approved["expiresAt"]

    def can_read() -> dict | None:
        body = srv.gql(READ_PAYMENTS, "mallory")
        return body if "errors" not in body else None

    started = time.monotonic()
    body = _until(can_read)
    assert body is not None, "the grant did not take effect within 5 s"
    assert time.monotonic() - started < 5
    assert body["data"]["finance"]["vendorPayments"]["totalCount"] == 5
    assert "finance.vendor_payments" in body["extensions"]["governance"]

    listed = srv.gql(LIST, "mallory", {"s": "ACTIVE"})["data"]["accessRequests"]
    assert [r["id"] for r in listed] == [rid]

    revoked = srv.gql(REVOKE, "fiona", {"id": rid})["data"]["revokeAccess"]
    assert revoked["state"] == "REVOKED" and revoked["revokedBy"] == "fiona"
    denied = _until(lambda: "errors" in srv.gql(READ_PAYMENTS, "mallory"))
    assert denied, "the revocation did not take effect within 5 s"

    rows = [r for r in _log_rows(srv, before) if r["action"] in ("request", "approve", "revoke")]
    # the gateway's record of each HTTP request: who, what, allow/deny and why
    gateway = [r for r in rows if not r["request_id"].startswith("access-request-")]
    steps = [(r["action"], r["subject"], r["decision"], r["product"]) for r in gateway]
    assert steps == [
        ("request", "mallory", "allow", "finance.vendor_payments"),
        ("approve", "mallory", "deny", "finance.vendor_payments"),
        ("approve", "erin", "deny", "finance.vendor_payments"),
        ("approve", "fiona", "allow", "finance.vendor_payments"),
        ("revoke", "fiona", "allow", "finance.vendor_payments"),
    ]
    assert all(r["reason"] and r["policy_version"] for r in gateway)
    assert gateway[2]["error_code"] == "BAD_USER_INPUT" and gateway[2]["reason"] == "No such access request."
    assert f"#{rid}" in gateway[3]["reason"]
    # and the policies code's own record of each change, written in the change's transaction
    changes = [(r["action"], r["subject"]) for r in rows if r["request_id"] == f"access-request-{rid}"]
    assert changes == [("request", "mallory"), ("approve", "fiona"), ("revoke", "fiona")]
    assert verify_report(AccessLog(get_engine(srv.settings.metadata_url))).first_bad is None


def test_subject_and_domain_are_never_arguments(access_server) -> None:
    srv = access_server
    for query in (
        'mutation { requestAccess(product: "finance.x", purpose: "x", subject: "fiona") { id } }',
        'mutation { requestAccess(product: "finance.x", purpose: "x", department: "hr") { id } }',
        'mutation { approveAccessRequest(id: 1, approver: "fiona") { id } }',
    ):
        error = _error(srv.gql(query, "mallory"))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "Did you mean" not in error["message"]
    # the department is the product's: a request for finance.* is decided by finance owners only
    rid = _request(srv, "bob", "finance.vendor_payments")["data"]["requestAccess"]["id"]
    assert _error(srv.gql(APPROVE, "frank", {"id": rid}))["message"] == "No such access request."  # hr owner
    assert srv.gql(REJECT, "fiona", {"id": rid, "r": "no purpose given"})["data"]["rejectAccessRequest"] == {
        "id": rid,
        "state": "REJECTED",
        "decidedBy": "fiona",
    }
    # a rejected request cannot be approved afterwards
    assert _error(srv.gql(APPROVE, "fiona", {"id": rid}))["extensions"]["code"] == "BAD_USER_INPUT"


def test_bad_inputs_are_bad_user_input(access_server) -> None:
    srv = access_server
    cases = [
        _request(srv, "mallory", "finance.vendor_payments", days=0),
        _request(srv, "mallory", "finance.vendor_payments", days=366),
        _request(srv, "mallory", "finance.vendor_payments", purpose="   "),
        _request(srv, "mallory", "finance", purpose="no product part"),
        _request(srv, "mallory", "global.everything"),
        _request(srv, "mallory", "finance.vendor,payments"),
        srv.gql(APPROVE, "fiona", {"id": 999_999}),
        srv.gql(REJECT, "fiona", {"id": 999_999, "r": " "}),
    ]
    for body in cases:
        assert _error(body)["extensions"]["code"] == "BAD_USER_INPUT", body
    assert _error(srv.gql(APPROVE, "fiona", {"id": 999_999}))["message"] == "No such access request."
    # audit and grant are roles, not requests: not even in the enum
    role_only = _request(srv, "mallory", "finance.vendor_payments", action="AUDIT")
    assert _error(role_only)["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Did you mean" not in _error(role_only)["message"]


def test_hidden_and_nonexistent_products_are_requested_alike(access_server) -> None:
    srv = access_server
    hidden = _request(srv, "mallory", "hr.salaries")  # restricted: mallory may not discover it
    missing = _request(srv, "mallory", "hr.no_such_product")
    assert "errors" not in hidden and "errors" not in missing
    shape = {k for k, v in hidden["data"]["requestAccess"].items() if k not in ("id", "product")}
    assert {k: hidden["data"]["requestAccess"][k] for k in shape} == {
        k: missing["data"]["requestAccess"][k] for k in shape
    }
    # the hr owner sees both and decides; the one for a real product then works
    owner_view = {r["product"] for r in srv.gql(LIST, "frank", {"s": "PENDING"})["data"]["accessRequests"]}
    assert {"hr.salaries", "hr.no_such_product"} <= owner_view
    rid = hidden["data"]["requestAccess"]["id"]
    assert srv.gql(APPROVE, "frank", {"id": rid})["data"]["approveAccessRequest"]["state"] == "ACTIVE"
    body = _until(
        lambda: "errors" not in (b := srv.gql("{ hr { salaries { totalCount } } }", "mallory")) and b
    )
    assert body and body["data"]["hr"]["salaries"]["totalCount"] == 3
    # the grantee may give a grant up herself
    assert srv.gql(REVOKE, "mallory", {"id": rid})["data"]["revokeAccess"]["state"] == "REVOKED"
    assert _until(lambda: "errors" in srv.gql("{ hr { salaries { totalCount } } }", "mallory"))


def test_listing_shows_own_and_owned_department_requests_only(access_server) -> None:
    srv = access_server
    rid = _request(srv, "bob", "hr.salaries", purpose="listing test")["data"]["requestAccess"]["id"]

    def ids(user: str) -> set[int]:
        return {r["id"] for r in srv.gql(LIST, user)["data"]["accessRequests"]}

    assert rid in ids("bob")  # own
    assert rid in ids("frank")  # owner of hr
    assert rid in ids("carol")  # the auditor reviews every request
    assert rid not in ids("fiona")  # owner of another department
    assert rid not in ids("mallory")  # someone else's
    assert all(r["subject"] == "mallory" for r in srv.gql(LIST, "mallory")["data"]["accessRequests"])


def test_mutations_only_as_post_json(access_server) -> None:
    srv = access_server
    headers = {"Authorization": f"Bearer {srv.token('mallory')}"}
    mutation = 'mutation { requestAccess(product: "finance.vendor_payments", purpose: "csrf") { id } }'
    count = len(srv.gql(LIST, "mallory")["data"]["accessRequests"])
    form = srv.client.post("/graphql", data={"query": mutation}, headers=headers)
    text = srv.client.post(
        "/graphql", content=f'{{"query": "{mutation}"}}', headers={**headers, "content-type": "text/plain"}
    )
    get = srv.client.get("/graphql", params={"query": mutation}, headers=headers)
    for response in (form, text, get):
        assert response.status_code in (400, 405), response.text
    assert len(srv.gql(LIST, "mallory")["data"]["accessRequests"]) == count


def test_mutations_are_never_served_from_the_response_cache(access_server) -> None:
    srv = access_server
    variables = {"p": "finance.vendor_payments", "a": "READ", "purpose": "same body twice", "days": 3}
    first = srv.gql(REQUEST, "bob", variables)["data"]["requestAccess"]["id"]
    second = srv.gql(REQUEST, "bob", variables)["data"]["requestAccess"]["id"]
    assert first != second


def test_a_mutation_that_cannot_be_logged_does_not_happen(access_server) -> None:
    import sqlite3

    srv = access_server
    count = len(srv.gql(LIST, "erin")["data"]["accessRequests"])
    db = srv.settings.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as raw:
        raw.execute(
            "CREATE TRIGGER no_log BEFORE INSERT ON access_log BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    try:
        response = srv.post(REQUEST, "erin", {"p": "hr.salaries", "a": "READ", "purpose": "x", "days": 1})
        assert response.status_code == 503
    finally:
        with sqlite3.connect(db) as raw:
            raw.execute("DROP TRIGGER no_log")
    assert len(srv.gql(LIST, "erin")["data"]["accessRequests"]) == count


def _answer(srv, mutation: str, user: str, variables: dict) -> tuple[Any, Any]:
    body = srv.gql(mutation, user, variables)
    error = _error(body)
    return error["message"], error["extensions"]


@pytest.mark.parametrize("state", ["pending", "approved", "rejected"])
def test_a_stranger_learns_nothing_from_deciding_someone_elses_request(access_server, state: str) -> None:
    """Issue 11: approving or rejecting someone else's request told a stranger its department and
    state. Now every step answers a stranger exactly as it answers for a request that does not exist."""
    srv = access_server
    rid = _request(srv, "bob", "finance.vendor_payments", purpose=f"stranger test {state}")["data"][
        "requestAccess"
    ]["id"]
    if state == "approved":
        srv.gql(APPROVE, "fiona", {"id": rid})
    elif state == "rejected":
        srv.gql(REJECT, "fiona", {"id": rid, "r": "no"})
    missing = rid + 100_000
    for mutation, variables in ((APPROVE, {}), (REJECT, {"r": "why"}), (REVOKE, {})):
        for stranger in ("mallory", "frank", "erin"):  # no role; owner elsewhere; finance analyst
            before = _head(srv)
            real = _answer(srv, mutation, stranger, {"id": rid, **variables})
            ghost = _answer(srv, mutation, stranger, {"id": missing, **variables})
            assert real == ghost == ("No such access request.", {"code": "BAD_USER_INPUT"}), (stranger, real)
            records = _log_rows(srv, before)
            assert len(records) == 2 and {r["decision"] for r in records} == {"deny"}
    # those who may know of it still get the real answer
    own = _answer(srv, APPROVE, "bob", {"id": rid})
    assert own[1]["code"] in ("FORBIDDEN", "BAD_USER_INPUT") and own[0] != "No such access request."
