"""Lint, explain, who-can and diff, through the library and through the `civicmesh` CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from policy_specs import DEMO_PRODUCTS, manifest_for

from civicmesh.cli import main
from meshcore.products import ProductSpec
from meshcore.settings import REPO_ROOT, Settings
from policies.engine import PolicyEngine
from policies.explain import diff, explain, who_can
from policies.lint import lint_dir, lint_model


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings, policy_dir: Path) -> Path:
    """Environment for in-process CLI runs; returns the path of a manifest with the demo products."""
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    monkeypatch.setenv("CIVICMESH_POLICIES_DIR", str(policy_dir))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))
    return manifest


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- lint ---------------------------------------------------------------------------------------


def test_shipped_policy_is_clean() -> None:
    assert lint_dir(REPO_ROOT / "policies", list(DEMO_PRODUCTS.values())) == []


def test_lint_finds_every_kind_of_problem(policy_dir: Path) -> None:
    path = policy_dir / "policy.csv"
    path.write_text(
        path.read_text()
        + "p, analyst, sales, sales.orders, read\n"  # unknown domain + product
        + "p, ghost, finance, *, read\n"  # unknown subject
        + "g, zed, analyst, finance\n"  # unknown user
        + "g, bob, wizard, finance\n"  # unknown role
        + "p, analyst, finance, finance.vendor_payments,x, read\n"  # comma injection
        + "p, analyst, *, **, read\n"  # wildcard domain
        + "p, analyst, finance, finance.vendor_.*, read\n"  # pattern
        + "p, owner, public_works, **, read\n"  # duplicate
    )
    codes = {p.code for p in lint_dir(policy_dir, list(DEMO_PRODUCTS.values()))}
    assert codes >= {
        "unknown-domain",
        "unknown-product",
        "unknown-subject",
        "unknown-user",
        "unknown-role",
        "bad-arity",
        "wildcard-domain",
        "pattern",
        "duplicate",
    }


def test_lint_model_refuses_eval_and_patterns() -> None:
    model = "[matchers]\nm = eval(p.rule) && regexMatch(r.obj, p.obj)\n"
    assert {p.code for p in lint_model(model)} == {"eval-like", "pattern"}


# -- explain / who-can / diff ---------------------------------------------------------------------


def test_explain_says_what_would_change_it(shipped_engine: PolicyEngine) -> None:
    vendor = DEMO_PRODUCTS["finance.vendor_payments"]
    text = "\n".join(explain(shipped_engine, "bob", vendor, "read"))
    assert text.startswith("DENY")
    assert "civicmesh access request finance.vendor_payments" in text
    sr = "\n".join(explain(shipped_engine, "dana", DEMO_PRODUCTS["public_works.service_requests"], "read"))
    assert "ALLOW" in sr and "district IN (D3)" in sr and "read_pii" in sr


def test_who_can(shipped_engine: PolicyEngine) -> None:
    names = {d.subject for d in who_can(shipped_engine, DEMO_PRODUCTS["hr.employees"], "read")}
    assert names == {"frank"}
    grant = {
        d.subject for d in who_can(shipped_engine, DEMO_PRODUCTS["public_works.response_times"], "grant")
    }
    assert grant == {"alice"}


def test_diff_reports_gains_and_losses(policy_dir: Path, shipped_engine: PolicyEngine) -> None:
    path = policy_dir / "policy.csv"
    text = (
        path.read_text()
        .replace("g, erin, analyst, finance\n", "")
        .replace("g, bob, analyst, transportation\n", "g, bob, owner, transportation\n")
    )
    path.write_text(text)
    changes = diff(shipped_engine, PolicyEngine.from_dir(policy_dir), DEMO_PRODUCTS.values())
    lost = {(c.subject, c.product, c.action) for c in changes if c.kind == "lose"}
    gained = {(c.subject, c.product, c.action) for c in changes if c.kind == "gain"}
    assert ("erin", "finance.vendor_payments", "export") in lost
    assert ("erin", "finance.vendor_payments", "read") not in lost  # still a finance member
    assert ("bob", "transportation.collisions", "read_pii") in gained
    changed = {(c.subject, c.product) for c in changes if c.kind == "change"}
    assert ("bob", "transportation.collisions") in changed  # masks lifted
    assert all(c.subject in {"bob", "erin"} for c in changes)


# -- CLI ----------------------------------------------------------------------------------------------


def test_cli_check(cli_env: Path, policy_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", "--manifest", str(cli_env))
    assert code == 0 and "policy OK" in out
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("p, analyst, finance, finance.nope, read\n")
    code, out, _ = run(capsys, "policy", "check", "--manifest", str(cli_env))
    assert code == 1 and "unknown-product" in out


def test_cli_explain_and_who_can(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "policy", "explain", "mallory", "hr.employees", "read", "--manifest", str(cli_env)
    )
    assert code == 0 and out.startswith("DENY")
    code, out, _ = run(
        capsys, "policy", "explain", "alice", "public_works.service_requests", "--manifest", str(cli_env)
    )
    assert code == 0 and out.count("ALLOW") == 7
    code, out, _ = run(
        capsys, "policy", "who-can", "finance.vendor_payments", "read_pii", "--manifest", str(cli_env)
    )
    assert code == 0 and out.split()[0] == "erin"
    code, _, err = run(capsys, "policy", "explain", "alice", "no.such", "--manifest", str(cli_env))
    assert code == 1 and "unknown product" in err
    code, _, err = run(capsys, "policy", "who-can", "hr.employees", "fly", "--manifest", str(cli_env))
    assert code == 1 and "unknown action" in err


def test_cli_diff_of_two_policy_files(
    cli_env: Path, policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new" / "policy.csv"
    new.parent.mkdir()
    shutil.copy(policy_dir / "policy.csv", new)
    with new.open("a") as handle:
        handle.write("g, mallory, analyst, finance\n")
    argv = ["policy", "diff", str(policy_dir / "policy.csv"), str(new), "--manifest", str(cli_env)]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert out.startswith("+ policy.csv: g, mallory, analyst, finance\n")  # the line, then the rights
    assert "+ mallory    read      finance.vendor_payments" in out
    assert "1 right(s) gained" not in out  # discover, read and export are gained
    code, _, _ = run(capsys, *argv, "--exit-code")
    assert code == 1


def test_cli_access_flow(cli_env: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    m = ["--manifest", str(cli_env)]
    code, out, _ = run(
        capsys,
        "access",
        "request",
        "hr.employees",
        "--as",
        "mallory",
        "--purpose",
        "pay audit",
        "--days",
        "7",
        *m,
    )
    assert code == 0 and out.startswith("#1") and "pending" in out
    code, _, err = run(capsys, "access", "approve", "1", "--as", "mallory")
    assert code == 1 and "requester" in err
    code, _, err = run(capsys, "access", "approve", "1", "--as", "alice")
    assert code == 1 and "not an owner" in err
    code, out, _ = run(capsys, "access", "approve", "1", "--as", "frank")
    assert code == 0 and "active" in out
    code, out, _ = run(capsys, "access", "list", "--as", "frank", "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["state"] == "active"
    code, out, _ = run(capsys, "access", "list", "--as", "bob")
    assert code == 0 and "no access requests" in out
    engine = PolicyEngine.load(settings)
    product: ProductSpec = DEMO_PRODUCTS["hr.employees"]
    assert engine.decide("mallory", product, "read").allowed
    code, out, _ = run(capsys, "access", "revoke", "1", "--as", "frank")
    assert code == 0 and "revoked" in out
    engine.refresh_if_changed()
    assert not engine.decide("mallory", product, "read").allowed
    code, _, err = run(
        capsys,
        "access",
        "request",
        "hr.employees",
        "--as",
        "mallory",
        "--purpose",
        "x",
        "--action",
        "grant",
        *m,
    )
    assert code == 1 and "cannot be requested" in err
