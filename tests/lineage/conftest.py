"""Fixtures for the lineage tests: a Settings object and a metadata store in a tmp dir.

Note: pytest puts `tests/` on sys.path, so the bare name `lineage` resolves to `tests/lineage` as a
namespace package; submodules (`lineage.events`, ...) still come from the real package through the
editable install's finder. So never use `lineage.__file__` in tests: use a submodule's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.outbox import Outbox
from meshcore.settings import Settings
from meshcore.store import dispose_all, get_engine


@pytest.fixture
def settings(tmp_path: Path, metadata_url: str) -> Settings:
    """On SQLite and on PostgreSQL (the `metadata_url` fixture)."""
    return Settings(home=tmp_path, metadata_url=metadata_url)


@pytest.fixture
def outbox(settings: Settings) -> Iterator[Outbox]:
    yield Outbox(get_engine(settings.metadata_url)).ensure_schema()
    dispose_all()
