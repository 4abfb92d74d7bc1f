"""Fixtures for the core tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshcore.settings import Settings
from meshcore.store import dispose_all

AUDIT_ENV = ("METADATA_URL", "AUDIT_SINK", "AUDIT_SIGNING_KEY_FILE", "AUDIT_PUBLIC_KEY_FILE", "AUDIT_KEY")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A tmp home (also CIVICMESH_HOME for the CLI) with the audit set-up at its defaults: signing
    key under secrets/, public key and checkpoint sink under audit/."""
    for name in AUDIT_ENV:
        monkeypatch.delenv(f"CIVICMESH_{name}", raising=False)
    monkeypatch.setenv("CIVICMESH_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    settings.ensure_dirs()
    yield settings
    dispose_all()
