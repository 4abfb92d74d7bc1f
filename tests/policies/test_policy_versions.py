"""The log says only what happened: policy loads and refused reloads are recorded by the serving
engine (with the lines that changed), suspicious policies are refused by the one set of lint rules,
and read-only commands write nothing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_specs import DEMO_PRODUCTS, manifest_for
from served import publish

from civicmesh.cli import main
from meshcore.accesslog import AccessLog, decode_row
from meshcore.audit.sealing import Sealer, open_log
from meshcore.settings import Settings
from meshcore.store import get_engine
from policies import versions
from policies.engine import PolicyEngine
from policies.lint import lint_texts
from policies.names import PolicyError

OWNER_LINE = "g, alice, owner, public_works\n"


def _records(settings: Settings, *actions: str) -> list[dict]:
    return [
        decode_row(r) for r in AccessLog(get_engine(settings.metadata_url)).rows() if r["action"] in actions
    ]


def _cut_before(text: str, marker: str) -> str:
    """The file cut at a line boundary: everything from the line holding `marker` is gone."""
    return text[: text.index(marker)]


# -- the lint rules: one place, used by `policy check` and every (re)load ------------------------------


@pytest.mark.parametrize(
    ("change", "codes"),
    [
        (lambda t: "", {"empty-policy", "role-without-rights"}),
        (lambda t: "# nothing here\n", {"empty-policy", "role-without-rights"}),
        (lambda t: t.replace(OWNER_LINE, ""), {"no-owner"}),
        (lambda t: _cut_before(t, "# role assignments"), {"no-owner"}),
        (lambda t: _cut_before(t, "# auditor"), {"role-without-rights", "no-owner"}),
        (lambda t: t.replace("p, erin, finance, *, read_pii\n", ""), set()),
    ],
    ids=["emptied", "comments-only", "owner-removed", "cut-before-assignments", "cut-before-auditor", "fine"],
)
def test_lint_refuses_policies_that_leave_things_ungoverned(
    policy_dir: Path, change: Callable[[str], str], codes: set[str]
) -> None:
    texts = {n: (policy_dir / n).read_text() for n in ("model.conf", "policy.csv", "users.yaml")}
    texts["policy.csv"] = change(texts["policy.csv"])
    assert {p.code for p in lint_texts(texts)} == codes


def test_a_department_that_lost_its_owner_is_named(policy_dir: Path) -> None:
    """Even when no line names the department any more, the last good policy's owners count."""
    texts = {n: (policy_dir / n).read_text() for n in ("model.conf", "policy.csv", "users.yaml")}
    texts["policy.csv"] = "\n".join(
        line for line in texts["policy.csv"].splitlines() if "hr" not in [f.strip() for f in line.split(",")]
    )
    assert not {p.code for p in lint_texts(texts)} & {"no-owner"}  # hr vanished entirely...
    lost = [p for p in lint_texts(texts, previously_owned={"hr", "finance"}) if p.code == "no-owner"]
    assert [p.message for p in lost] == [
        "department 'hr' has no owner (it had one in the last good policy): nobody approves its requests"
    ]


def test_the_engine_refuses_what_policy_check_refuses(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], settings: Settings
) -> None:
    engine = make_engine(check_interval=None)
    good = engine.version
    sr = DEMO_PRODUCTS["public_works.service_requests"]
    path = policy_dir / "policy.csv"
    original = path.read_text()
    for broken in ("", original.replace(OWNER_LINE, ""), _cut_before(original, "# role assignments")):
        path.write_text(broken)
        assert engine.refresh_if_changed() is False
        assert engine.version == good and engine.decide("alice", sr, "read_pii").allowed  # last good kept
        ok, detail = engine.status()
        assert not ok and "refused" in detail and good in detail
        with pytest.raises(PolicyError):
            make_engine()  # a fresh load refuses it outright
    refused = _records(settings, versions.REJECTED)
    assert len(refused) == 3  # once per refused set of files, not once per poll
    engine.refresh_if_changed()
    assert len(_records(settings, versions.REJECTED)) == 3
    assert "empty-policy" in refused[0]["reason"] and "no-owner" in refused[1]["reason"]
    assert "- policy.csv: g, alice, owner, public_works" in refused[1]["reason"]
    path.write_text(original)  # put back: nothing new to load, and the refusal is over
    assert engine.refresh_if_changed() is False and engine.status()[0]
    assert "back after a refused reload" in _records(settings, versions.LOADED)[-1]["reason"]


def test_a_restart_refuses_what_a_reload_would_refuse(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], settings: Settings
) -> None:
    """Every hr line removed while the gateway was down: hr had an owner under the last policy the
    log records as loaded, so the restart refuses the files as a reload would, and says so."""
    make_engine(check_interval=None)  # the gateway loaded the good policy, then stopped
    path = policy_dir / "policy.csv"
    kept = [
        line for line in path.read_text().splitlines() if "hr" not in [f.strip() for f in line.split(",")]
    ]
    path.write_text("\n".join(kept) + "\n")
    with pytest.raises(PolicyError, match="department 'hr' has no owner"):
        make_engine(check_interval=None)
    refused = _records(settings, versions.REJECTED)
    assert len(refused) == 1 and "department 'hr' has no owner" in refused[0]["reason"]
    state = versions.status(AccessLog(get_engine(settings.metadata_url)), policy_dir)
    assert not state.ok and state.refused is not None and state.served is not None


def test_a_loaded_change_is_recorded_with_its_lines(
    policy_dir: Path, make_engine: Callable[..., PolicyEngine], settings: Settings
) -> None:
    engine = make_engine(check_interval=None)
    path = policy_dir / "policy.csv"
    path.write_text(
        path.read_text().replace("g, bob, analyst, transportation\n", "") + "g, bob, owner, finance\n"
    )
    assert engine.refresh_if_changed() is True
    first, change = _records(settings, versions.LOADED)
    assert "the first recorded policy" in first["reason"]
    assert "1 line(s) added, 1 removed" in change["reason"]
    assert "+ policy.csv: g, bob, owner, finance" in change["reason"]
    assert "- policy.csv: g, bob, analyst, transportation" in change["reason"]
    digest = change["snapshot_id"].removeprefix("policy:")
    files = versions.files_of(get_engine(settings.metadata_url), digest)
    assert files is not None and files == engine.files() and files.digest() == digest


# -- read-only commands write nothing ----------------------------------------------------------------


@pytest.fixture
def served_home(home: Settings) -> Settings:
    """A home whose gateway loaded the policy and logged it (signed, sealed)."""
    log = open_log(home)
    PolicyEngine.load(home, audit_log=log, serving=True)
    Sealer(log).checkpoint("shutdown")
    return home


def _fingerprint(settings: Settings) -> tuple:
    log = AccessLog(get_engine(settings.metadata_url))
    rows = list(log.rows())
    return len(rows), rows[-1]["hash"], len(log.checkpoints()), Path(settings.audit_sink).read_text()


def test_read_only_commands_leave_the_chain_unchanged(
    served_home: Settings,
    policy_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))
    other = tmp_path / "other-policy"
    shutil.copytree(policy_dir, other)
    with (other / "policy.csv").open("a") as handle:
        handle.write("g, mallory, analyst, finance\n")
    before = _fingerprint(served_home)
    m = ["--manifest", str(manifest)]
    commands = [
        ["policy", "explain", "mallory", "finance.vendor_payments", "read", *m],
        ["policy", "who-can", "finance.vendor_payments", "read", *m],
        ["policy", "check", *m],
        ["policy", "status"],
        ["policy", "diff", str(policy_dir), str(other), *m],
        ["access", "list", "--as", "frank"],
        ["audit", "verify"],
        ["audit", "report", *m],
    ]
    for policies in (policy_dir, other):  # the configured folder, and another one
        monkeypatch.setenv("CIVICMESH_POLICIES_DIR", str(policies))
        for argv in commands:
            assert main(argv) in (0, 1), argv
            capsys.readouterr()
            assert _fingerprint(served_home) == before, argv


def test_the_access_review_is_of_the_policy_in_force_not_the_files_on_disk(
    served_home: Settings, policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The review lists the rights the gateway grants: an edit no gateway loaded gives none, and
    files a gateway would refuse do not stop the review."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))

    def rights() -> set[tuple[str, str, str]]:
        assert main(["audit", "report", "--format", "json", "--manifest", str(manifest)]) == 0
        report = json.loads(capsys.readouterr().out)
        return {
            (r["subject"], r["product"], r["action"])
            for rs in report["rights_by_subject"].values()
            for r in rs
        }

    served = rights()
    assert ("alice", "public_works.service_requests", "read_pii") in served
    path = policy_dir / "policy.csv"
    path.write_text(path.read_text() + "g, mallory, owner, finance\n")  # on disk, never loaded
    assert rights() == served
    path.write_text("")  # emptied: refused by any gateway, the served policy still in force
    assert rights() == served


def test_a_policy_the_gateway_refuses_gives_no_power_to_the_cli(
    served_home: Settings, policy_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files the gateway refuses (hr left without its owner) that also make mallory a finance owner:
    `access approve` and `snapshots withdraw --as mallory` must not decide under them (the last
    good policy is the one in force, for every surface that writes)."""
    publish(served_home, [DEMO_PRODUCTS["finance.vendor_payments"]])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for(DEMO_PRODUCTS.values())))
    m = ["--manifest", str(manifest)]
    assert (
        main(["access", "request", "finance.vendor_payments", "--as", "bob", "--purpose", "audit", *m]) == 0
    )
    request_id = capsys.readouterr().out.split()[0].removeprefix("#")
    path = policy_dir / "policy.csv"
    kept = [
        line for line in path.read_text().splitlines() if "hr" not in [f.strip() for f in line.split(",")]
    ]
    path.write_text("\n".join([*kept, "g, mallory, owner, finance"]) + "\n")
    assert main(["access", "approve", request_id, "--as", "mallory"]) == 1
    assert "department 'hr' has no owner" in capsys.readouterr().err
    withdraw = ["snapshots", "withdraw", "finance.vendor_payments", "--reason", "mine now", "--as", "mallory"]
    assert main(withdraw) == 1
    assert "department 'hr' has no owner" in capsys.readouterr().err
    assert not _records(served_home, "approve", "withdraw")
