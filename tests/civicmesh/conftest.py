"""Fixtures for the core tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshcore.accesslog import AccessLog
from meshcore.catalog import Catalog
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine

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


# A bare SQLite store with the catalog and access-log tables (modules may define their own).
@pytest.fixture
def engine(tmp_path: Path):
    return get_engine(f"sqlite:///{tmp_path / 'meta.db'}")


@pytest.fixture
def catalog(engine) -> Catalog:
    return Catalog(engine).ensure_schema()


@pytest.fixture
def log(engine) -> AccessLog:
    return AccessLog(engine).ensure_schema()
