"""The owner-facing lint rules (read without discover, an undeclared scope column) as truth tables,
the engine refusing a policy that breaks them, and `policy diff --against REV` on a real git repo."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from policy_specs import DEMO_PRODUCTS, col, manifest_for, spec

from civicmesh.cli import main
from meshcore.products import ColumnSpec
from meshcore.settings import Settings
from policies.decision import RowFilter
from policies.directory import parse_directory
from policies.engine import PolicyEngine
from policies.lint import lint_discover, lint_scope
from policies.names import PolicyError
from policies.policyfile import parse_policy

BASE = "g, bob, analyst, sales\ng, olivia, auditor, global\n"


@pytest.mark.parametrize(
    ("lines", "flagged"),
    [
        ("p, analyst, sales, *, read", True),
        ("p, analyst, sales, *, read\np, analyst, sales, *, discover", False),
        ("p, analyst, sales, **, read\np, analyst, sales, *, discover", True),  # restricted ones hidden
        ("p, analyst, sales, **, read\np, analyst, sales, **, discover", False),
        ("p, analyst, sales, sales.orders, read\np, analyst, sales, *, discover", False),
        ("p, analyst, sales, sales.orders, read\np, analyst, sales, sales.other, discover", True),
        ("p, analyst, sales, sales.orders, read\np, analyst, hr, **, discover", True),  # other domain
        ("p, analyst, sales, sales.orders, read\np, analyst, global, **, discover", False),
        ("p, bob, sales, sales.orders, read\np, analyst, sales, *, discover", False),  # via bob's role
        ("p, olivia, sales, sales.orders, read\np, analyst, sales, *, discover", True),  # not her role
        ("p, olivia, sales, sales.orders, read\np, auditor, global, **, discover", False),  # global role
        ("p, analyst, sales, *, discover\np, analyst, sales, *, export", False),  # only read counts
    ],
)
def test_read_without_discover(lines: str, flagged: bool) -> None:
    rules, bad = parse_policy(lines + "\n" + BASE)
    assert not bad
    found = lint_discover(rules)
    assert bool(found) is flagged, found
    if flagged:
        assert found[0].code == "read-without-discover" and found[0].where == "policy.csv:1"


def test_read_of_a_restricted_product_without_its_discover() -> None:
    """`*` covers every product of the domain except restricted ones: a `*` discover line does not
    let a reader of a restricted product find it."""
    lines = "p, analyst, sales, sales.secret, read\np, analyst, sales, *, discover\n" + BASE
    rules, _ = parse_policy(lines)
    assert lint_discover(rules) == []  # without the product list: not known to be restricted
    [found] = lint_discover(rules, {"sales.secret"})
    assert found.code == "read-without-discover" and found.where == "policy.csv:1"
    assert lint_discover(rules, {"sales.other"}) == []


DIRECTORY = parse_directory("scopes:\n  districts: district\nroles: {}\nusers: {}\n")
SCOPED = dict(
    [
        ("declared", (spec("a.declared", "internal", col("district"), scope_column="district"), False)),
        ("unscoped", (spec("a.unscoped", "public", col("district"), unscoped="an aggregate"), False)),
        ("undeclared", (spec("a.undeclared", "internal", col("district")), True)),
        # another column declared: dana's district filter would not apply to it (every row)
        (
            "other scope",
            (spec("a.other", "internal", col("district"), col("dept"), scope_column="dept"), True),
        ),
        # DuckDB compares identifiers ignoring case: `District` is the district column
        ("other case", (spec("a.case", "internal", col("District")), True)),
        (
            "declared, other case",
            (spec("a.case2", "internal", col("District"), scope_column="District"), False),
        ),
        ("no such column", (spec("a.plain", "internal", col("ward")), False)),
    ]
)


@pytest.mark.parametrize("case", SCOPED)
def test_undeclared_scope_column(case: str) -> None:
    product, flagged = SCOPED[case]
    product = dataclasses.replace(product, source_file="models/a/marts/x.yml")
    found = lint_scope([product], DIRECTORY)
    assert bool(found) is flagged, found
    if flagged:
        assert found[0].code == "undeclared-scope" and found[0].where == "models/a/marts/x.yml"
        assert "'district'" in found[0].message.lower()


# dana: supervisor of public_works scoped by `districts: [D3]`; bob: no scope; alice: its owner.
SCOPE_DECISIONS = [
    ("declared", "dana", col("district"), {"scope_column": "district"}, RowFilter("district", ("D3",))),
    ("undeclared", "dana", col("district"), {}, RowFilter("district", ())),
    (
        "another column declared",
        "dana",
        col("district"),
        {"scope_column": "category"},
        RowFilter("district", ()),
    ),
    ("undeclared, other case", "dana", col("District"), {}, RowFilter("District", ())),
    (
        "declared, other case",
        "dana",
        col("District"),
        {"scope_column": "District"},
        RowFilter("District", ("D3",)),
    ),
    ("unscoped with a reason", "dana", col("district"), {"unscoped": "city-wide counts"}, None),
    ("undeclared, reader not scoped", "bob", col("district"), {}, None),
    ("undeclared, the owner", "alice", col("district"), {}, None),
]


@pytest.mark.parametrize(
    ("case", "user", "column", "declared", "rows"), SCOPE_DECISIONS, ids=[c[0] for c in SCOPE_DECISIONS]
)
def test_a_scoped_reader_never_sees_every_row_of_an_undeclared_scope_column(
    shipped_engine: PolicyEngine,
    case: str,
    user: str,
    column: ColumnSpec,
    declared: dict,
    rows: RowFilter | None,
) -> None:
    """The gateway's decision fails closed where the lint flags (`undeclared_scope`): no rows."""
    product = spec("public_works.leaky", "internal", col("request_id"), column, col("category"), **declared)
    decision = shipped_engine.decide(user, product, "read")
    assert decision.allowed and decision.row_filter == rows


def test_the_engine_refuses_a_read_without_discover(policy_dir: Path) -> None:
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("p, analyst, finance, **, read\n")
    with pytest.raises(PolicyError, match="read-without-discover"):
        PolicyEngine.from_dir(policy_dir)


def test_policy_check_flags_an_undeclared_scope_column(
    policy_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    products = dict(DEMO_PRODUCTS)
    products["public_works.response_times"] = dataclasses.replace(
        products["public_works.response_times"], unscoped=None
    )
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(products.values())))
    code = main(["policy", "check", "--dir", str(policy_dir), "--manifest", str(manifest)])
    out = capsys.readouterr().out
    assert code == 1
    assert "undeclared-scope: public_works.response_times has column 'district'" in out


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _commit_policies(policy_dir: Path, message: str) -> Path:
    """A git repository around `policy_dir` with its policy committed; returns the repository."""
    repo = policy_dir.parent
    git(repo, "init", "-q")
    git(repo, "add", "policies")
    git(repo, "commit", "-q", "-m", message)
    return repo


def _diff_env(policy_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`policy diff`'s environment (home, store, policies) and a manifest of the demo products."""
    monkeypatch.setenv("CIVICMESH_HOME", str(settings.home))
    monkeypatch.setenv("CIVICMESH_METADATA_URL", settings.metadata_url)
    monkeypatch.setenv("CIVICMESH_POLICIES_DIR", str(policy_dir))
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))
    return manifest


def test_policy_diff_against_a_git_revision(
    policy_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    repo = _commit_policies(policy_dir, "policy as reviewed")
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("g, mallory, analyst, finance\n")
    manifest = _diff_env(policy_dir, settings, tmp_path, monkeypatch)
    code = main(["policy", "diff", "--against", "HEAD", "--manifest", str(manifest), "--exit-code"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.startswith("+ policy.csv: g, mallory, analyst, finance\n")
    assert "+ mallory    read      finance.vendor_payments" in out
    git(repo, "commit", "-q", "-am", "mallory joins finance")
    assert main(["policy", "diff", "--against", "HEAD", "--manifest", str(manifest), "--exit-code"]) == 0
    assert "no policy line changed" in capsys.readouterr().out
    # the revision before: the change shows again, now against an explicit folder
    assert main(["policy", "diff", str(policy_dir), "--against", "HEAD~1", "--manifest", str(manifest)]) == 0
    assert "+ mallory    read      finance.vendor_payments" in capsys.readouterr().out
    assert main(["policy", "diff", "--against", "no-such-rev", "--manifest", str(manifest)]) == 1
    assert "no-such-rev" in capsys.readouterr().err


@pytest.mark.parametrize("revision", ["", "--output=written", "HEAD:"])
def test_policy_diff_against_takes_only_a_commit(
    policy_dir: Path,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    revision: str,
) -> None:
    """An empty REV would compare with git's index (`git show :path`) and say nothing changed; one
    starting with `-` is an option of `git show` (`--output=FILE` writes a file): both refused."""
    repo = _commit_policies(policy_dir, "policy as reviewed")
    with (policy_dir / "policy.csv").open("a") as handle:
        handle.write("g, mallory, analyst, finance\n")
    git(repo, "add", "policies")  # staged: the index holds the change
    (policy_dir / "written:policies").mkdir()
    monkeypatch.chdir(policy_dir)
    manifest = _diff_env(policy_dir, settings, tmp_path, monkeypatch)
    assert main(["policy", "diff", f"--against={revision}", "--manifest", str(manifest)]) == 1
    assert "is not a git revision of a commit" in capsys.readouterr().err
    assert list((policy_dir / "written:policies").iterdir()) == []


def test_policy_diff_against_a_revision_the_lint_now_refuses(
    policy_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The committed policy grants read without discover (refused by today's lint); the change under
    review fixes it: the diff compares with the policy as it was instead of refusing to."""
    bad = "p, analyst, finance, **, read\n"
    clean = (policy_dir / "policy.csv").read_text()
    (policy_dir / "policy.csv").write_text(clean + bad)
    _commit_policies(policy_dir, "read without discover")
    (policy_dir / "policy.csv").write_text(clean)
    manifest = _diff_env(policy_dir, settings, tmp_path, monkeypatch)
    assert main(["policy", "diff", "--against", "HEAD", "--manifest", str(manifest)]) == 0
    assert "- policy.csv: p, analyst, finance, **, read" in capsys.readouterr().out
    (policy_dir / "policy.csv").write_text(clean + bad)  # the new side still passes every rule
    assert main(["policy", "diff", "--against", "HEAD", "--manifest", str(manifest)]) == 1
    assert "read-without-discover" in capsys.readouterr().err
