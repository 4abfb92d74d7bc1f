"""Dagster resources: the platform settings and what derives from them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from meshcore.catalog import Catalog
from meshcore.settings import Settings, sqlite_url
from meshcore.store import get_engine


class MeshResource(dg.ConfigurableResource):
    """Where the mesh keeps its data and metadata; empty fields fall back to the environment."""

    home: str = ""
    metadata_url: str = ""

    @property
    def settings(self) -> Settings:
        base = Settings.from_env()
        home = Path(self.home) if self.home else base.home
        url = self.metadata_url or (base.metadata_url if not self.home else sqlite_url(home))
        return Settings(home=home, metadata_url=url, demo_mode=base.demo_mode)

    def catalog(self) -> Catalog:
        settings = self.settings
        return Catalog(get_engine(settings.metadata_url), settings.home).ensure_schema()
