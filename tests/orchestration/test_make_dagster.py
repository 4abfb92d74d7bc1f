"""`make dagster` as users run it: with a custom CIVICMESH_HOME it serves that home's instance (the
run `civicmesh build` made is in its GraphQL), automation is off by default, and a SIGTERM stops
it even when a non-interactive shell started it in the background (which ignores SIGINT for it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from orchestration.buildlock import processes_with_env
from tests.mesh import BuiltMesh, copy_home, home_env

REPO = Path(__file__).resolve().parents[2]
QUERY = """{
  runsOrError { __typename ... on Runs { results { runId status } } }
  repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name scheduleState { status } } sensors { name sensorState { status } } } } }
}"""

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(port: int, shell: subprocess.Popen[bytes], timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout  # ~21 s on a quiet machine, minutes on a busy one
    while time.monotonic() < deadline:
        assert shell.poll() is None, "make dagster exited"
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=30)
            if response.status_code == 200 and response.json().get("data", {}).get("repositoriesOrError"):
                return response.json()["data"]
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError("the Dagster UI did not come up")


def _processes_of(home: Path) -> list[int]:
    return processes_with_env("CIVICMESH_HOME", str(home))


def _wait_gone(home: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def test_make_dagster_serves_the_homes_instance_and_stops_on_sigterm(
    built_mesh: BuiltMesh, tmp_path: Path
) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "custom-home")
    port, pidfile, log = _free_port(), tmp_path / "make.pid", tmp_path / "make.log"
    script = f"make -C {REPO} dagster DAGSTER_PORT={port} >{log} 2>&1 & echo $! >{pidfile}; wait"
    shell = subprocess.Popen(["sh", "-c", script], env=home_env(home))
    try:
        data = _query(port, shell)
        runs = {r["runId"]: r["status"] for r in data["runsOrError"]["results"]}
        assert runs.get(built_mesh.report.run_id) == "SUCCESS", runs
        (repository,) = data["repositoriesOrError"]["nodes"]
        states = [s["scheduleState"]["status"] for s in repository["schedules"]]
        states += [s["sensorState"]["status"] for s in repository["sensors"]]
        assert len(states) == 3 and set(states) == {"STOPPED"}, repository

        os.kill(int(pidfile.read_text()), signal.SIGTERM)  # make passes it on to `dagster dev`
        shell.wait(120)
        # Code servers end on their heartbeat timeout (45 s) once `dagster dev` is gone.
        assert _wait_gone(home, 120) == [], log.read_text()[-3000:]
    finally:
        for pid in _processes_of(home):  # clean-up after a failure only
            os.kill(pid, signal.SIGKILL)
        if shell.poll() is None:
            shell.kill()
