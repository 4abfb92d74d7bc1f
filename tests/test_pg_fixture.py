"""The PostgreSQL tests fail when no server can start: never a silent skip, except on a developer's
explicit request (CIVICMESH_TEST_POSTGRES=skip), which CI ignores."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SELECTION = ["tests/civicmesh/test_catalog.py", "-k", "postgresql and publish_makes", "-p", "no:randomly"]


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "CIVICMESH_TEST_POSTGRES")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *SELECTION],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_no_server_fails_the_postgres_tests() -> None:
    result = _pytest(CIVICMESH_PG_BINDIR="/nonexistent")
    assert result.returncode != 0, result.stdout
    assert "PostgreSQL could not start" in result.stdout and "1 error" in result.stdout


def test_a_developer_may_opt_out_explicitly_but_not_in_ci() -> None:
    skipped = _pytest(CIVICMESH_PG_BINDIR="/nonexistent", CIVICMESH_TEST_POSTGRES="skip")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    in_ci = _pytest(CIVICMESH_PG_BINDIR="/nonexistent", CIVICMESH_TEST_POSTGRES="skip", CI="true")
    assert in_ci.returncode != 0 and "PostgreSQL could not start" in in_ci.stdout
