"""`/readyz`: ready only when every registered check passes; a failing or raising check is 503."""

from __future__ import annotations

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
