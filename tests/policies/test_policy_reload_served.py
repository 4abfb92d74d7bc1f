"""A serving gateway (real uvicorn) refuses an emptied policy file and one that leaves a department
without an owner: it keeps the last good policy, and the refusal shows in `/readyz`, in
`civicmesh policy status` and in the access log; putting the files right makes it ready again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from served import Served

from civicmesh.cli import main
from meshcore.accesslog import AccessLog, decode_row
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine
from policies import versions


@pytest.fixture
def served(home: Settings) -> Iterator[tuple[Served, Settings]]:
    server = Served(home)
    yield server, home
    server.stop()
    dispose_all()


def _policy_records(settings: Settings) -> list[dict]:
    log = AccessLog(get_engine(settings.metadata_url))
    return [decode_row(r) for r in log.rows() if r["action"] in (versions.LOADED, versions.REJECTED)]


@pytest.mark.parametrize(
    ("break_file", "finding"),
    [
        (lambda text: "", "empty-policy"),
        (lambda text: text.replace("g, fiona, owner, finance\n", ""), "department 'finance' has no owner"),
    ],
    ids=["emptied", "owner-removed"],
)
def test_a_refused_reload_is_loud_and_the_last_good_policy_stays(
    served: tuple[Served, Settings],
    policy_dir: Path,
    capsys: pytest.CaptureFixture[str],
    break_file: Callable[[str], str],
    finding: str,
) -> None:
    server, settings = served
    ready = server.until(lambda r: r["status"] == "ready")
    assert ready["checks"]["policy"]["ok"] and ready["checks"]["audit"]["ok"]
    assert main(["policy", "status"]) == 0
    assert "the served policy" in capsys.readouterr().out
    path = policy_dir / "policy.csv"
    good = path.read_text()
    path.write_text(break_file(good))

    ready = server.until(lambda r: r["status"] == "not_ready")
    check = ready["checks"]["policy"]
    assert (
        not check["ok"] and finding in check["detail"] and "serving the last good version" in check["detail"]
    )
    assert server.me().json()["data"]["me"]["user"] == "alice"  # still served, under the last good policy
    assert main(["policy", "status"]) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and finding in out
    refused = [r for r in _policy_records(settings) if r["action"] == versions.REJECTED]
    assert len(refused) == 1 and finding in refused[0]["reason"] and refused[0]["decision"] == "deny"

    path.write_text(good)
    server.until(lambda r: r["status"] == "ready")
    assert main(["policy", "status"]) == 0
    capsys.readouterr()
    assert [r["action"] for r in _policy_records(settings)] == [
        versions.LOADED,
        versions.REJECTED,
        versions.LOADED,
    ]


def test_an_idle_gateway_notices_a_refused_policy_in_readyz(
    served: tuple[Served, Settings], policy_dir: Path
) -> None:
    """A load balancer polling only /readyz (no traffic) sees the refusal too."""
    server, settings = served
    assert server.client.get("/readyz").status_code == 200
    (policy_dir / "policy.csv").write_text("")
    deadline = time.monotonic() + 60
    while (ready := server.client.get("/readyz")).status_code == 200:
        assert time.monotonic() < deadline, ready.json()
        time.sleep(0.2)
    assert "empty-policy" in ready.json()["checks"]["policy"]["detail"]
    assert [r["action"] for r in _policy_records(settings)] == [versions.LOADED, versions.REJECTED]
