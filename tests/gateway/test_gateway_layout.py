"""Packaging and CLI contract: `graphql` stays graphql-core; `civicmesh token` and `query` work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt

REPO = Path(__file__).resolve().parents[2]


def test_graphql_is_graphql_core_and_gateway_lives_inside_it() -> None:
    import gateway
    import graphql

    assert not (REPO / "graphql" / "__init__.py").exists()
    assert "site-packages" in graphql.__file__ and hasattr(graphql, "graphql_sync")
    assert Path(gateway.__file__).parent == REPO / "graphql" / "gateway"


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CIVICMESH_HOME": str(settings.home),
        "CIVICMESH_METADATA_URL": settings.metadata_url,
    }
    env.pop("CIVICMESH_JWT_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", "civicmesh", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_token_prints_a_jwt_on_its_last_line(gw_settings) -> None:
    done = _cli(gw_settings, "token", "alice")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    claims = jwt.decode(
        token,
        gw_settings.jwt_secret,
        algorithms=["HS256"],
        audience=gw_settings.jwt_audience,
        issuer=gw_settings.jwt_issuer,
    )
    assert claims["sub"] == "alice"


def test_token_for_an_unknown_user_fails(gw_settings) -> None:
    done = _cli(gw_settings, "token", "zed")
    assert done.returncode == 1
    assert "unknown user" in done.stderr


def test_query_runs_in_process_with_real_governance(gw_settings) -> None:
    done = _cli(
        gw_settings,
        "query",
        "--as",
        "dana",
        "query($n: Int) { publicWorks { serviceRequests(first: $n) { totalCount nodes { district } } } }",
        "--variables",
        '{"n": 3}',
    )
    assert done.returncode == 0, done.stderr + done.stdout
    body = json.loads(done.stdout)
    page = body["data"]["publicWorks"]["serviceRequests"]
    assert page["totalCount"] == 10 and {n["district"] for n in page["nodes"]} == {"D3"}
    denied = _cli(gw_settings, "query", "--as", "mallory", "{ hr { salaries { totalCount } } }")
    assert denied.returncode == 1
    # hr.salaries is not in mallory's schema: it fails like a field that never existed
    assert json.loads(denied.stdout)["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
