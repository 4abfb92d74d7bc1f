"""Shared set-up for the benchmarks: a throw-away mesh home, a uvicorn server in its own process
group, the resident memory of its process tree, and `civicmesh audit verify` of a store's log."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from meshcore.settings import REPO_ROOT, Settings, available_cpus


def mesh_settings(home: Path) -> Settings:
    return Settings.for_home(home)


@contextlib.contextmanager
def bench_home(home: Path | None, prefix: str) -> Iterator[Path]:
    """`home` resolved (kept: a `--home` to reuse), or a temporary folder removed afterwards."""
    if home is not None:
        yield home.resolve()
        return
    tmp = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as benchmarks print them beside their figures."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def in_threads(work: Callable[[int], object], threads: int) -> float:
    """Run `work(k)` for k in range(threads), each in its own thread; the wall seconds until all end."""
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def metadata_option(parser: argparse.ArgumentParser) -> None:
    """`--metadata sqlite|pg|both`: the metadata store a bench runs on (PostgreSQL: bench/_pg.py)."""
    parser.add_argument(
        "--metadata",
        choices=("sqlite", "pg", "both"),
        default="sqlite",
        help="the metadata store: SQLite (default), PostgreSQL, or both in the same run",
    )


def raw_dbt_build(settings: Settings) -> float:
    """`dbt build` alone on an already ingested warehouse: the floor a build cannot beat.

    It shares the build's target folder, so it parses as warm as the orchestrated build did."""
    dbt = Path(sys.executable).parent / "dbt"
    project = REPO_ROOT / "transforms"
    env = {"CIVICMESH_WAREHOUSE": str(settings.warehouse_path), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    command = [
        str(dbt),
        "build",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(settings.dbt_target_dir),
        "--log-path",
        str(settings.home / "bench_dbt_logs"),
        "--quiet",
    ]
    started = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UvicornServer:
    """An ASGI app factory under `python -m uvicorn` on 127.0.0.1, in its own session so `stop()`
    ends its whole process tree (master and workers) and nothing else.

    `env` is added to this process's environment (CIVICMESH_HOME etc.); CIVICMESH_DEMO is dropped
    unless `env` sets it. Raises RuntimeError if /healthz does not answer 200 within `timeout` s."""

    def __init__(
        self,
        factory: str,
        home: Path,
        env: dict[str, str],
        workers: int = 1,
        timeout: float = 90.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if k != "CIVICMESH_DEMO"}
        # As `civicmesh serve --workers N` does: each worker its share of the CPUs for DuckDB.
        environ.setdefault("CIVICMESH_DUCKDB_THREADS", str(max(1, available_cpus() // workers)))
        command = [
            sys.executable, "-m", "uvicorn", factory, "--factory", "--app-dir", str(REPO_ROOT),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, env={**environ, **env}, cwd=home, start_new_session=True)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if b" 200 " in s.recv(200):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not start")

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) in bytes summed over the server's process tree. RSS counts pages shared by
        workers once per worker; PSS splits each shared page among its sharers (Linux /proc)."""
        rss = pss = 0
        for pid in _tree(self.proc.pid):
            try:
                fields = dict(
                    line.split(":", 1)
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
                )
            except OSError:  # the process ended meanwhile
                continue
            rss += int(fields["Rss"].split()[0]) * 1024
            pss += int(fields["Pss"].split()[0]) * 1024
        return rss, pss

    def cpu_seconds(self) -> float:
        """CPU time (s) the server's process tree has spent so far (`cpu_seconds`)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the uvicorn tree only
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time (s) spent so far by `pid` and its living descendants: fields 14 and 15
    of /proc/<pid>/stat (proc(5)), in clock ticks. A process that ended meanwhile is left out."""
    ticks = 0
    for current in _tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # after "(comm)": state is field 3, so 14 -> [11]
    return ticks / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def audit_verify(home: Path, metadata_url: str, sink: str) -> tuple[bool, str]:
    """`civicmesh audit verify --sink SINK` on the store at `metadata_url` (the home's public key), as
    an operator runs it: (exit code 0, its output)."""
    env = {**os.environ, "CIVICMESH_HOME": str(home), "CIVICMESH_METADATA_URL": metadata_url}
    cli = Path(sys.executable).parent / "civicmesh"
    result = subprocess.run(
        [str(cli), "audit", "verify", "--sink", sink], env=env, capture_output=True, text=True, check=False
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()
