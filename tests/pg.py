"""A throwaway PostgreSQL cluster for the tests and benchmarks: `initdb` + `pg_ctl` on a free port.

The server binaries come from Debian's `postgresql` package (`make test` installs it when missing):
`CIVICMESH_PG_BINDIR`, else the newest `/usr/lib/postgresql/*/bin`, else `initdb` on PATH.
`initdb` refuses to run as root, so as root every server command runs as the `postgres` user the
package creates (or `nobody`), in a temp folder owned by it. The cluster listens on 127.0.0.1 only
with `trust` authentication: it holds test data and lives as long as the test session.

Tests that need it fail when it cannot start (never a silent skip); a developer without a server
opts out explicitly with `CIVICMESH_TEST_POSTGRES=skip`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BACKENDS = ("sqlite", "postgresql")
OPT_OUT_ENV = "CIVICMESH_TEST_POSTGRES"
SUPERUSER = "civicmesh"
DATABASE = "civicmesh"

# Durability is not under test against this cluster (the data dies with it): skip the fsyncs.
_TEST_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "log_min_messages": "warning",
}


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be started here (the message says why and what to do)."""


def opted_out() -> bool:
    """A developer's explicit opt-out; never honoured in CI (CI=true), where PostgreSQL must run."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return False
    return os.environ.get(OPT_OUT_ENV, "").lower() in {"skip", "0", "off", "no"}


def find_bindir() -> Path:
    configured = os.environ.get("CIVICMESH_PG_BINDIR")
    if configured:
        candidates = [Path(configured)]
    else:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
        )
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PgUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: install Debian's server with "
        f"`apt-get install -y postgresql` (`make test` does), or set {OPT_OUT_ENV}=skip to skip the "
        "PostgreSQL tests on this machine"
    )


def _service_user() -> pwd.struct_passwd | None:
    """Who runs the server: ourselves, or (as root, which initdb refuses) `postgres` or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PgUnavailable("running as root and neither a `postgres` nor a `nobody` user exists for initdb")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One initdb'd cluster in `root` (data/, server.log, the socket); `start`/`stop` as often as needed."""

    def __init__(self, root: Path, bindir: Path, user: pwd.struct_passwd | None) -> None:
        self.root = root
        self.bindir = bindir
        self.user = user
        self.data = root / "data"
        self.logfile = root / "server.log"
        self.port = 0

    @classmethod
    def create(cls, conf: dict[str, str] | None = None) -> PgCluster:
        """initdb a new cluster in a fresh temp folder (not started). `conf` overrides settings."""
        bindir = find_bindir()
        user = _service_user()
        root = Path(tempfile.mkdtemp(prefix="civicmesh-pg-"))
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root, bindir, user)
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        cluster.configure({**_TEST_CONF, **(conf or {})})
        return cluster

    def configure(self, settings: dict[str, str]) -> None:
        """Append `settings` to postgresql.conf (the last occurrence wins; takes effect on start)."""
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data / "postgresql.conf").open("a") as handle:
            handle.write(lines)

    def _run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = [str(self.bindir / command[0]), *command[1:]]
        kwargs = {} if self.user is None else {"user": self.user.pw_uid, "group": self.user.pw_gid}
        result = subprocess.run(
            args,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            extra_groups=[] if self.user is not None else None,
            **kwargs,  # type: ignore[arg-type]
        )
        if result.returncode != 0:
            raise PgUnavailable(
                f"{command[0]} failed ({result.returncode}): {result.stderr or result.stdout}"
            )
        return result

    def start(self) -> PgCluster:
        """Start the server and wait until it accepts connections (a new free port on first start;
        a restart keeps the port, so URLs handed out stay valid)."""
        for attempt in range(5):
            if not self.port or attempt:
                self.port = free_port()  # another process may take a port between check and bind
                self.configure({"port": str(self.port), "unix_socket_directories": f"'{self.root}'"})
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "start")
                return self
            except PgUnavailable as exc:
                if "could not bind" not in self.log_tail() or attempt == 4:
                    raise PgUnavailable(f"{exc}\n{self.log_tail()}") from exc
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` ends open sessions, `immediate` is a crash); a no-op if stopped."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(PgUnavailable, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- databases -------------------------------------------------------------------------------

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        """A SQLAlchemy URL (driver psycopg 3); `schema` puts it first on the search_path."""
        url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"
        return f"{url}?options=-csearch_path%3D{schema}" if schema else url

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database) as conn:
            conn.autocommit = True
            conn.execute(sql)

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    @contextlib.contextmanager
    def scratch_schema(self) -> Iterator[str]:
        """A URL whose tables land in a new, empty schema (cheaper than a database per test); the
        schema and the engines pooled for the URL are dropped afterwards."""
        from meshcore.store import dispose

        schema = f"t_{uuid.uuid4().hex[:12]}"
        if not getattr(self, "_has_db", False):
            self.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE template0')
            self._has_db = True
        self.execute(f'CREATE SCHEMA "{schema}"', DATABASE)
        url = self.url(DATABASE, schema)
        try:
            yield url
        finally:
            dispose(url)
            with contextlib.suppress(Exception):  # the server may be stopped by the test itself
                self.execute(f'DROP SCHEMA "{schema}" CASCADE', DATABASE)


def on_both_backends(name: str) -> Any:
    """A fixture body for a test module that runs on both stores: the session fixture `name` on
    SQLite, its `pg_<name>` twin on PostgreSQL, chosen by the `metadata_backend` parameter:

        server = pytest.fixture(on_both_backends("server"), name="server")
    """

    def pick(request: Any, metadata_backend: str) -> Any:
        return request.getfixturevalue(name if metadata_backend == "sqlite" else f"pg_{name}")

    return pick


def start_cluster(conf: dict[str, str] | None = None) -> PgCluster:
    """Create and start a cluster; PgUnavailable (with the server log) if it cannot start."""
    cluster = PgCluster.create(conf)
    try:
        return cluster.start()
    except BaseException:
        cluster.destroy()
        raise
