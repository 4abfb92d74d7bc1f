"""The auditors' pages once access-log records are archived (issue 16, item 3): `/audit/verify`
still verifies (archive and store as one chain), and a search from the beginning says the period
is archived instead of showing part of the history as if it were all of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshcore.audit.archiving import archive_sealed
from meshcore.audit.sealing import Sealer, open_log
from meshcore.store import dispose_all
from tests.gateway.conftest import Server
from tests.portal.conftest import Browser, make_home


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A portal of its own: archiving changes what every later search sees."""
    server = Server(make_home(tmp_path_factory, "portal_archive", demo_mode=True))
    server.start()
    yield server
    server.stop()
    dispose_all()


def test_verify_and_search_after_archiving(portal: Server) -> None:
    browser = Browser(portal.url)
    browser.sign_in_as("carol")
    assert browser.get("/audit").status_code == 200
    log = open_log(portal.settings)
    sealer = Sealer(log)
    sealer.checkpoint("count")
    sealer.detach()
    browser.get("/audit")  # one record after the seal: the head stays in the store
    [segment] = archive_sealed(log).segments

    verified = browser.get("/audit/verify")
    assert verified.status_code == 200, verified.text
    assert "<strong>OK:</strong> verified up to record" in verified.text, verified.text[
        verified.text.find("<h1>") :
    ]
    archived = f"<dd>records 1\u2013{segment.last_seq} (<code>civicmesh audit archive</code>)</dd>"
    assert archived in verified.text
    searched = browser.get("/audit")
    assert searched.status_code == 400
    assert f"records 1..{segment.last_seq} of the access log" in searched.text
    browser.close()
