"""Where things live and how the platform is configured, read once from the environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The home's folder of published snapshots; the catalog stores snapshot paths starting with it.
SNAPSHOTS_FOLDER = "snapshots"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class Settings:
    """All paths derive from `home` unless overridden, so a test can point everything at a tmp dir."""

    home: Path
    metadata_url: str
    demo_mode: bool = False
    repo_root: Path = REPO_ROOT
    jwt_issuer: str = "civicmesh"
    jwt_audience: str = "civicmesh-gateway"
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        home = _env_path("CIVICMESH_HOME", REPO_ROOT / "data")
        url = os.environ.get("CIVICMESH_METADATA_URL") or f"sqlite:///{home / 'metadata.db'}"
        demo = os.environ.get("CIVICMESH_DEMO", "").lower() in {"1", "true", "yes"}
        return cls(home=home, metadata_url=url, demo_mode=demo)

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def snapshots_dir(self) -> Path:
        return self.home / SNAPSHOTS_FOLDER

    @property
    def lineage_dir(self) -> Path:
        return self.home / "lineage"

    @property
    def dbt_project_dir(self) -> Path:
        return _env_path("CIVICMESH_DBT_PROJECT_DIR", self.repo_root / "transforms")

    @property
    def dbt_target_dir(self) -> Path:
        return self.home / "dbt_target"

    @property
    def policies_dir(self) -> Path:
        return _env_path("CIVICMESH_POLICIES_DIR", self.repo_root / "policies")

    @cached_property
    def jwt_secret(self) -> str:
        """HS256 secret: from the environment, or generated once and kept (git-ignored) in demo mode."""
        value = os.environ.get("CIVICMESH_JWT_SECRET")
        if value:
            return value
        return self._stored_secret("jwt_secret")

    @cached_property
    def mask_key(self) -> str:
        """Key for keyed-hash (HMAC) pseudonyms; never leaves the server."""
        return os.environ.get("CIVICMESH_MASK_KEY") or self._stored_secret("mask_key")

    @cached_property
    def audit_key(self) -> str:
        """Signs access-log checkpoints. In production set CIVICMESH_AUDIT_KEY from a secret store the
        database's administrators cannot read; the stored fallback only suits a demo."""
        return os.environ.get("CIVICMESH_AUDIT_KEY") or self._stored_secret("audit_key")

    @property
    def query_timeout_s(self) -> float:
        """Longest a gateway query may run before DuckDB is interrupted (LIMIT_EXCEEDED)."""
        return float(self.extra.get("query_timeout_s") or os.environ.get("CIVICMESH_QUERY_TIMEOUT_S") or 10.0)

    @property
    def automation_on(self) -> bool:
        """Whether Dagster's build schedule, landing sensor and freshness schedule start RUNNING
        (`CIVICMESH_AUTOMATION=on`); off by default. Any other value than on/off is refused."""
        value = (self.extra.get("automation") or os.environ.get("CIVICMESH_AUTOMATION") or "off").lower()
        if value not in {"on", "off"}:
            raise ValueError(f"CIVICMESH_AUTOMATION must be 'on' or 'off', not {value!r}")
        return value == "on"

    @property
    def jwks_file(self) -> str | None:
        return self.extra.get("jwks_file") or os.environ.get("CIVICMESH_JWKS_FILE")

    @property
    def jwks_url(self) -> str | None:
        return self.extra.get("jwks_url") or os.environ.get("CIVICMESH_JWKS_URL")

    def _stored_secret(self, name: str) -> str:
        path = self.home / "secrets" / name
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value

    def ensure_dirs(self) -> None:
        for path in (self.home, self.landing_dir, self.snapshots_dir, self.lineage_dir):
            path.mkdir(parents=True, exist_ok=True)
