"""`/readyz`: ready only when every registered check passes; a failing or raising check is 503."""

from __future__ import annotations

import re
import time

from gateway.readiness import CheckResult, Readiness


def test_a_healthy_gateway_is_ready(server) -> None:
    response = server.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


def test_a_failing_check_makes_the_gateway_not_ready_and_names_it(server) -> None:
    readiness = server.server.config.app.state.gateway.readiness
    readiness.add("probe", lambda: CheckResult(False, "metadata store is read-only"))
    try:
        response = server.client.get("/readyz")
    finally:
        readiness.add("probe", lambda: CheckResult(True))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["probe"] == {"ok": False, "detail": "metadata store is read-only"}
    assert server.client.get("/healthz").status_code == 200  # liveness is not readiness


def test_a_check_that_raises_counts_as_failed() -> None:
    readiness = Readiness()

    def broken() -> CheckResult:
        raise OSError("disk gone")

    readiness.add("snapshots", broken)
    ready, checks = readiness.report()
    assert not ready
    assert checks["snapshots"]["ok"] is False and "OSError" in str(checks["snapshots"]["detail"])


def test_readyz_names_no_server_path(server) -> None:
    """Break 11: `/readyz` answers anyone and named where the audit sink lives
    (`checkpoints to /srv/.../audit/checkpoints.jsonl`); details keep a path's last part only."""
    home = str(server.settings.home)
    readiness = server.server.config.app.state.gateway.readiness
    readiness.add("probe", lambda: CheckResult(False, f"cannot read file://{home}/audit/sink.jsonl: gone"))
    try:
        response = server.client.get("/readyz")
    finally:
        readiness.add("probe", lambda: CheckResult(True))
    assert home not in response.text, response.text
    checks = response.json()["checks"]
    assert checks["probe"]["detail"] == "cannot read .../sink.jsonl: gone"
    assert "checkpoints.jsonl" in checks["audit"]["detail"]  # the sink's name, not where it is


def test_readyz_shows_the_snapshots_held_in_memory_and_those_still_loading(server) -> None:
    """A snapshot's in-memory copy loads in the background after its first read (seconds for
    millions of rows): `/readyz` shows the progress, and it never makes the gateway unready."""
    pool = server.server.config.app.state.gateway.duck
    before = server.client.get("/readyz").json()["checks"]["snapshot_memory"]
    assert before["ok"] is True and before["detail"] == pool.memory_report()
    held = len(pool._hot)
    body = server.gql("{ publicWorks { serviceRequests(first: 1) { nodes { requestId } } } }", "alice")
    assert "errors" not in body, body
    deadline = time.monotonic() + 30
    while True:
        response = server.client.get("/readyz")
        detail = response.json()["checks"]["snapshot_memory"]["detail"]
        assert response.status_code == 200, response.text  # loading or not, the gateway is ready
        if len(pool._hot) > held or held:  # loaded now, or by an earlier test of this server
            break
        assert time.monotonic() < deadline, detail
        time.sleep(0.05)
    detail = server.client.get("/readyz").json()["checks"]["snapshot_memory"]["detail"]
    assert re.fullmatch(
        r"[1-9]\d* snapshots? in local copies \(\d+ MiB of \d+ MiB\), \d+ loading, "
        r"0 read from their files \(no copy\); queries on [1-9]\d* DuckDB threads?",
        detail,
    ), detail
