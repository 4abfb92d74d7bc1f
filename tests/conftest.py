"""Shared, session-scoped fixtures: small landing data and a private copy of the dbt project.

dbt writes target/, logs/ and partial-parse state into its project, and other sessions work in the
same tree, so tests never run dbt inside `transforms/` itself: each session works on a copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.pg import BACKENDS

if TYPE_CHECKING:
    from tests.mesh import BuiltMesh
    from tests.pg import PgCluster

REPO = Path(__file__).resolve().parent.parent
DBT = Path(sys.executable).parent / "dbt"
SMALL_ROWS = 2_000


def _copy_dbt_project(dest: Path) -> Path:
    shutil.copytree(
        REPO / "transforms",
        dest,
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"),
    )
    return dest


def _run_dbt(project: Path, *args: str, warehouse: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the dbt CLI on `project` with its own target/log folders and warehouse; never raises."""
    env = {
        **os.environ,
        "CIVICMESH_WAREHOUSE": str(warehouse or project / "warehouse.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    command = [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    command += ["--target-path", str(project / "target"), "--log-path", str(project / "logs")]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="session")
def copy_dbt_project() -> Callable[[Path], Path]:
    """`copy_dbt_project(dest)`: copy `transforms/` (without build state) to `dest`."""
    return _copy_dbt_project


@pytest.fixture(scope="session")
def run_dbt() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_dbt(project, *args, warehouse=None)`: the dbt CLI on a project copy; never raises."""
    return _run_dbt


@pytest.fixture(scope="session")
def landing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Landing files for every department, generated once (seed 7, 2,000 service requests)."""
    from civicmesh.synthetic import generate

    out = tmp_path_factory.mktemp("landing")
    generate(out, rows=SMALL_ROWS, seed=7)
    return out


@pytest.fixture(scope="session")
def dbt_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dbt parse` of a copy of the real project; the manifest every product spec comes from."""
    project = _copy_dbt_project(tmp_path_factory.mktemp("dbt_parse") / "transforms")
    result = _run_dbt(project, "parse")
    assert result.returncode == 0, result.stdout + result.stderr
    return project / "target" / "manifest.json"


@pytest.fixture(scope="session")
def built_mesh(tmp_path_factory: pytest.TempPathFactory, landing_dir: Path) -> BuiltMesh:
    """A real mesh built through Dagster once per session (2,000 service requests, ~20 s)."""
    from meshcore.catalog import Catalog
    from meshcore.store import get_engine
    from tests.mesh import BuiltMesh, build, isolated_settings

    home = tmp_path_factory.mktemp("mesh")
    shutil.copytree(landing_dir, home / "landing")
    settings = isolated_settings(home)
    report, lines = build(settings)
    assert report.success, "\n".join(lines + report.failed_steps)
    return BuiltMesh(settings, report, Catalog(get_engine(settings.metadata_url), settings.home), lines)


@pytest.fixture
def blackhole() -> Iterator[str]:
    """The URL of a backend that accepts connections and never answers (a send blocks)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- the metadata store on SQLite and on PostgreSQL (tests/pg.py) ----------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for the session. Fails (never skips) when none can start,
    unless the developer opted out with CIVICMESH_TEST_POSTGRES=skip."""
    from tests import pg

    if pg.opted_out():
        pytest.skip(f"{pg.OPT_OUT_ENV}=skip: PostgreSQL tests skipped on request")
    try:
        cluster = pg.start_cluster()
    except pg.PgUnavailable as exc:
        pytest.fail(f"PostgreSQL could not start: {exc}", pytrace=False)
    yield cluster
    cluster.destroy()


@pytest.fixture(params=BACKENDS)
def metadata_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgresql": see `tests.pg.on_both_backends`."""
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty metadata store, once on SQLite (a file in tmp_path), once on PostgreSQL (a fresh
    schema in the session's cluster)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
        yield url
        from meshcore.store import dispose

        dispose(url)
        return
    cluster: PgCluster = request.getfixturevalue("postgres")
    with cluster.scratch_schema() as url:
        yield url
