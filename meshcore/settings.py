"""Where things live and how the platform is configured, read once from the environment."""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The home's folder of published snapshots; the catalog stores snapshot paths starting with it.
SNAPSHOTS_FOLDER = "snapshots"
# Compressed hot snapshot copies take ~1-2.5x their Parquet size: 512 MiB holds ~12M service requests.
DEFAULT_SNAPSHOT_MEMORY_MB = 512


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def snapshot_copies_dir(snapshots_dir: Path) -> Path:
    """The local DuckDB copies of the snapshots under `snapshots_dir`: `<home>/cache/snapshot_copies`
    (outside the snapshots folder, so backups leave these derived files out)."""
    return snapshots_dir.parent / "cache" / "snapshot_copies"


def sqlite_url(home: Path) -> str:
    """The SQLAlchemy URL of the default metadata store: SQLite at `<home>/metadata.db`."""
    return f"sqlite:///{home / 'metadata.db'}"


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
        url = os.environ.get("CIVICMESH_METADATA_URL") or sqlite_url(home)
        demo = os.environ.get("CIVICMESH_DEMO", "").lower() in {"1", "true", "yes"}
        return cls(home=home, metadata_url=url, demo_mode=demo)

    @classmethod
    def for_home(cls, home: Path, **options: Any) -> Settings:
        """Settings for `home` with its metadata store in SQLite at `<home>/metadata.db` (the default
        of `from_env`); `options` are the other fields (`demo_mode=True`, ...)."""
        return cls(home=home, metadata_url=sqlite_url(home), **options)

    def option(self, key: str) -> str | None:
        """An optional setting: `extra[key]` (so a test can configure one Settings object), else
        the environment's `CIVICMESH_<KEY>` (e.g. `lineage_transports`, `lineage_url`)."""
        return self.extra.get(key) or os.environ.get(f"CIVICMESH_{key.upper()}")

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

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def audit_signing_key_file(self) -> Path:
        """Ed25519 private key (PEM) that signs the access log. In production point
        CIVICMESH_AUDIT_SIGNING_KEY_FILE at a file the database's administrators cannot read; the
        default under the home's secrets/ is generated on first use and only suits a demo."""
        return _env_path("CIVICMESH_AUDIT_SIGNING_KEY_FILE", self.home / "secrets" / "audit_signing_key.pem")

    @property
    def audit_public_key_file(self) -> Path:
        """Where the public key is exported (writers) and read (`civicmesh audit verify`)."""
        return _env_path("CIVICMESH_AUDIT_PUBLIC_KEY_FILE", self.audit_dir / "public_key.pem")

    @property
    def audit_sink(self) -> str:
        """The append-only sink outside the metadata store that receives every checkpoint."""
        return os.environ.get("CIVICMESH_AUDIT_SINK") or str(self.audit_dir / "checkpoints.jsonl")

    @property
    def audit_archive_dir(self) -> Path:
        """Where `civicmesh audit archive` moves sealed access-log segments (compressed, each with a
        manifest): CIVICMESH_AUDIT_ARCHIVE_DIR, default the home's audit/archive/."""
        return _env_path("CIVICMESH_AUDIT_ARCHIVE_DIR", self.audit_dir / "archive")

    @property
    def checkpoint_every(self) -> int:
        """A checkpoint after this many records..."""
        return int(os.environ.get("CIVICMESH_AUDIT_CHECKPOINT_RECORDS") or 1000)

    @property
    def checkpoint_interval_s(self) -> float:
        """...and after this many seconds with unsealed records (and at shutdown)."""
        return float(os.environ.get("CIVICMESH_AUDIT_CHECKPOINT_SECONDS") or 60.0)

    @property
    def legacy_audit_key(self) -> str | None:
        """The HMAC key of checkpoints written before Ed25519 signing (CIVICMESH_AUDIT_KEY, or the
        demo's stored one): read once to check an old log before it is sealed; never generated."""
        path = self.home / "secrets" / "audit_key"
        return os.environ.get("CIVICMESH_AUDIT_KEY") or (path.read_text().strip() if path.exists() else None)

    @property
    def query_timeout_s(self) -> float:
        """Longest a gateway query may run before DuckDB is interrupted (LIMIT_EXCEEDED)."""
        return float(self.extra.get("query_timeout_s") or os.environ.get("CIVICMESH_QUERY_TIMEOUT_S") or 10.0)

    @property
    def lineage_flush_timeout_s(self) -> float:
        """Longest a build waits at its end to deliver its lineage events; what is not delivered by
        then stays in the outbox for the next dispatcher (CIVICMESH_LINEAGE_FLUSH_TIMEOUT_S)."""
        value = self.extra.get("lineage_flush_timeout_s") or os.environ.get(
            "CIVICMESH_LINEAGE_FLUSH_TIMEOUT_S"
        )
        return float(value or 1.0)

    @property
    def snapshot_copies_dir(self) -> Path:
        """Where the gateway keeps local DuckDB copies of snapshots (gateway/copies.py)."""
        return snapshot_copies_dir(self.snapshots_dir)

    @property
    def snapshot_memory_budget_bytes(self) -> int:
        """Bytes of local DuckDB copies of hot snapshots each gateway process reads (faster scans;
        LRU; one file per snapshot shared by a host's workers through the OS page cache):
        CIVICMESH_SNAPSHOT_MEMORY_MB, in MiB (default 512, about 10M service requests; 0: always
        read the Parquet files). A snapshot whose copy does not fit is read from its Parquet file."""
        value = self.extra.get("snapshot_memory_mb") or os.environ.get("CIVICMESH_SNAPSHOT_MEMORY_MB")
        megabytes = float(value or DEFAULT_SNAPSHOT_MEMORY_MB)
        if not 0 <= megabytes < 1 << 30:
            raise ValueError(f"CIVICMESH_SNAPSHOT_MEMORY_MB must be a number of MiB >= 0, not {value!r}")
        return int(megabytes * (1 << 20))

    @property
    def duckdb_threads(self) -> int:
        """Threads each gateway process's DuckDB runs a query on: CIVICMESH_DUCKDB_THREADS, a whole
        number from 1 to 1024 (default: the CPUs this process may run on; `civicmesh serve
        --workers N` gives each worker its share: `duckdb_threads_for`)."""
        return self.duckdb_threads_for(1)

    def duckdb_threads_for(self, workers: int) -> int:
        """DuckDB threads per process when `workers` processes serve together: the setting if set,
        else this process's CPUs shared out (at least 1). More query threads than cores in all
        workers together only add switching: on 2 cores, 2 workers of 1 thread serve ~15 % more
        uncached reads at 8 clients than 2 workers of 2 (bench/gateway.py)."""
        value = self.extra.get("duckdb_threads") or os.environ.get("CIVICMESH_DUCKDB_THREADS")
        if not value:
            return max(1, available_cpus() // max(1, workers))
        threads = int(value) if str(value).strip().isdigit() else 0
        if not 1 <= threads <= 1024:
            raise ValueError(f"CIVICMESH_DUCKDB_THREADS must be a whole number from 1 to 1024, not {value!r}")
        return threads

    @property
    def lineage_read_retention(self) -> timedelta | None:
        """How long a delivered read event stays in the lineage outbox before compaction removes it
        (`lineage.compaction`; the access log keeps every read): CIVICMESH_LINEAGE_READ_RETENTION_DAYS,
        a number of days (default 7; 0: once delivered), or `inf` to keep every event (None)."""
        value = self.extra.get("lineage_read_retention_days") or os.environ.get(
            "CIVICMESH_LINEAGE_READ_RETENTION_DAYS"
        )
        days = float(value or 7.0)
        if not days >= 0:  # NaN too
            raise ValueError(f"CIVICMESH_LINEAGE_READ_RETENTION_DAYS must be >= 0 or inf, not {value!r}")
        return None if math.isinf(days) else timedelta(days=days)

    @property
    def lineage_file_max_bytes(self) -> int | None:
        """The size at which the lineage event file (`<home>/lineage/events.jsonl`) is rotated and
        compressed: CIVICMESH_LINEAGE_FILE_MAX_MB, in MiB (default 100; 0: never rotate)."""
        value = self.extra.get("lineage_file_max_mb") or os.environ.get("CIVICMESH_LINEAGE_FILE_MAX_MB")
        megabytes = float(value or 100)
        if not 0 <= megabytes < 1 << 30:
            raise ValueError(f"CIVICMESH_LINEAGE_FILE_MAX_MB must be a number of MiB >= 0, not {value!r}")
        return int(megabytes * (1 << 20)) or None

    @property
    def lineage_file_keep(self) -> int | None:
        """How many rotated (compressed) lineage event files are kept, the newest:
        CIVICMESH_LINEAGE_FILE_KEEP (default 10; `all`: every one)."""
        value = self.extra.get("lineage_file_keep") or os.environ.get("CIVICMESH_LINEAGE_FILE_KEEP") or "10"
        if value.strip().lower() == "all":
            return None
        if not value.strip().isdigit():
            raise ValueError(f"CIVICMESH_LINEAGE_FILE_KEEP must be a count >= 0 or 'all', not {value!r}")
        return int(value)

    @property
    def lineage_compact_interval_s(self) -> float:
        """Seconds between two compactions of the lineage outbox (CIVICMESH_LINEAGE_COMPACT_INTERVAL_S)."""
        value = self.extra.get("lineage_compact_interval_s") or os.environ.get(
            "CIVICMESH_LINEAGE_COMPACT_INTERVAL_S"
        )
        return float(value or 300.0)

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

    # -- staff portal sign-in (graphql/portal); OpenID Connect with the organisation's provider --

    @property
    def oidc_issuer(self) -> str | None:
        """The provider's issuer URL; ID tokens must carry exactly this `iss`."""
        return self.extra.get("oidc_issuer") or os.environ.get("CIVICMESH_OIDC_ISSUER")

    @property
    def oidc_discovery_url(self) -> str | None:
        """OpenID Connect Discovery 1.0 §4: `<issuer>/.well-known/openid-configuration` unless set."""
        url = self.extra.get("oidc_discovery_url") or os.environ.get("CIVICMESH_OIDC_DISCOVERY_URL")
        issuer = self.oidc_issuer
        return url or (f"{issuer.rstrip('/')}/.well-known/openid-configuration" if issuer else None)

    @property
    def oidc_client_id(self) -> str | None:
        return self.extra.get("oidc_client_id") or os.environ.get("CIVICMESH_OIDC_CLIENT_ID")

    @property
    def oidc_client_secret(self) -> str | None:
        return self.extra.get("oidc_client_secret") or os.environ.get("CIVICMESH_OIDC_CLIENT_SECRET")

    @property
    def organisation_name(self) -> str:
        """Who publishes the catalog (DCAT-AP dct:publisher of the portal's catalog feed)."""
        name = self.extra.get("organisation_name") or os.environ.get("CIVICMESH_ORGANISATION_NAME")
        return name or "civicmesh"

    @cached_property
    def portal_session_key(self) -> str:
        """Signs the portal's session cookie; set CIVICMESH_PORTAL_SESSION_KEY when several hosts serve."""
        return os.environ.get("CIVICMESH_PORTAL_SESSION_KEY") or self._stored_secret("portal_session_key")

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


# -- read where no Settings object is at hand (module-level helpers, still read only here) ---------

GRAPHIQL_MODULES_ENV = "CIVICMESH_GRAPHIQL_MODULES"  # GraphiQL's node_modules (a packaged install)
PORTAL_MODULES_ENV = "CIVICMESH_PORTAL_MODULES"  # the portal's node_modules (a packaged install)


def node_modules_dir(variable: str, default: Path) -> Path:
    """An npm `node_modules` folder: `variable` (GRAPHIQL_MODULES_ENV or PORTAL_MODULES_ENV) when
    set, else `default` (where `make install` puts it)."""
    return Path(os.environ.get(variable) or default)


def site(default: str) -> str:
    """`CIVICMESH_SITE`: the authority of lineage namespaces (`civicmesh://<site>`). Read on each
    call (cheap) so tests and multi-site deployments can set it per process."""
    return os.environ.get("CIVICMESH_SITE", default)


def lineage_enabled() -> bool:
    """`CIVICMESH_LINEAGE=off` exists to measure what lineage costs a build (bench/lineage.py)."""
    return os.environ.get("CIVICMESH_LINEAGE", "on").lower() != "off"


def chosen_dagster_home() -> Path | None:
    """`DAGSTER_HOME` when the user (or `civicmesh build`, for its children) set it, else None."""
    value = os.environ.get("DAGSTER_HOME")
    return Path(value) if value else None
