"""One build per home at a time: a second build waits for the first, then runs; `--no-wait` refuses;
a run Dagster launches waits for a CLI build too; a build killed with SIGKILL is recovered by the
next one (its run marked failed, its dbt ended)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from orchestration.buildlock import BUILD_RUN_ENV, EXIT_BUILD_LOCKED, LOCK_FILE, is_running, processes_of_run
from tests.mesh import CIVICMESH, BuiltMesh, cli, copy_home, home_env

pytestmark = pytest.mark.slow


def _start_build(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [CIVICMESH, "build", *args],
        env=home_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _holder(home: Path, proc: subprocess.Popen[str], timeout: float = 300) -> dict:
    """The lock file's holder once `proc` holds the lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the build ended early: {proc.stderr.read() if proc.stderr else ''}"
        try:
            holder = json.loads((home / LOCK_FILE).read_text() or "null")
        except (OSError, ValueError):
            holder = None
        if holder and holder["pid"] == proc.pid:
            return holder
        time.sleep(0.1)
    raise AssertionError("the build never took the lock")


@contextmanager
def _instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance of `home` (its event log storage reads DAGSTER_HOME: set it meanwhile)."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous


def _run_record(home: Path, run_id: str) -> dg.RunRecord:
    with _instance(home) as instance:
        record = instance.get_run_record_by_id(run_id)
    assert record is not None, run_id
    return record


def _run_id(stderr: str) -> str:
    found = re.search(r"build succeeded in [\d.]+s \(run ([0-9a-f-]{36})\)", stderr)
    assert found, stderr[-3000:]
    return found.group(1)


def test_a_second_build_waits_for_the_first_then_runs(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "home")
    first = _start_build(home)
    holder = _holder(home, first)
    refused = cli(home, "build", "--no-wait")
    second = _start_build(home)
    first_err = first.communicate(timeout=900)[1]
    second_err = second.communicate(timeout=900)[1]

    assert refused.returncode == EXIT_BUILD_LOCKED, refused.stderr
    assert f"another build is running: build {holder['run_id']}" in refused.stderr
    assert first.returncode == 0, first_err[-3000:]
    assert second.returncode == 0, second_err[-3000:]
    waiting = f"waiting for build {holder['run_id']} started {holder['started_at']} by pid {first.pid}"
    assert waiting in second_err, second_err[:2000]
    assert _run_id(first_err) == holder["run_id"]
    runs = [_run_record(home, _run_id(err)) for err in (first_err, second_err)]
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert runs[0].end_time is not None and runs[1].start_time is not None
    assert runs[0].end_time <= runs[1].start_time, "the two runs overlapped"


def test_a_run_dagster_launches_waits_for_a_cli_build(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "home")
    cli_build = _start_build(home)
    holder = _holder(home, cli_build)
    # What the daemon's run worker does for a UI, schedule or sensor run: the job, with its executor.
    dagster = str(Path(CIVICMESH).parent / "dagster")
    launched = subprocess.run(
        [dagster, "job", "execute", "-m", "orchestration.definitions", "-j", "build_all_products"],
        env={**home_env(home), "DAGSTER_HOME": str(home / "dagster")},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    cli_err = cli_build.communicate(timeout=900)[1]
    assert cli_build.returncode == 0, cli_err[-3000:]
    assert launched.returncode == 0, launched.stderr[-3000:]
    output = launched.stdout + launched.stderr
    assert f"waiting for build {holder['run_id']} started {holder['started_at']}" in output
    run_id = re.search(r"build_all_products - ([0-9a-f-]{36}) - ", output)
    assert run_id, output[-2000:]
    with _instance(home) as instance:
        steps = instance.all_logs(run_id.group(1), of_type=dg.DagsterEventType.STEP_START)
    assert _run_record(home, run_id.group(1)).dagster_run.status == dg.DagsterRunStatus.SUCCESS
    cli_end = _run_record(home, holder["run_id"]).end_time
    assert steps and cli_end is not None and min(s.timestamp for s in steps) >= cli_end, "the runs overlapped"


def _dbt_of(run_id: str, timeout: float = 300) -> list[int]:
    """Pids of the `dbt` processes of build `run_id`, once dbt runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dbt = [pid for pid in processes_of_run(run_id) if _is_dbt(pid)]
        if dbt:
            return dbt
        time.sleep(0.2)
    raise AssertionError("dbt never started")


def _is_dbt(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"/dbt") for arg in args)


def test_a_killed_build_is_marked_failed_and_its_dbt_ended(built_mesh: BuiltMesh, tmp_path: Path) -> None:
    home = copy_home(built_mesh.settings.home, tmp_path / "home")
    killed = _start_build(home)
    holder = _holder(home, killed)
    dbt = _dbt_of(holder["run_id"])
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    time.sleep(1)
    assert any(is_running(pid) for pid in dbt), "precondition: dbt outlives a build killed with SIGKILL"
    assert _run_record(home, holder["run_id"]).dagster_run.status == dg.DagsterRunStatus.STARTED

    after = cli(home, "build")
    assert after.returncode == 0, after.stderr[-3000:]
    assert f"marked the dead build {holder['run_id']}" in after.stderr
    assert not any(is_running(pid) for pid in dbt)
    assert _run_record(home, holder["run_id"]).dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert _run_record(home, _run_id(after.stderr)).dagster_run.status == dg.DagsterRunStatus.SUCCESS


def test_children_of_a_dead_build_are_found_by_their_run(tmp_path: Path) -> None:
    """The recovery's process search: only the dead run's processes, never others."""
    run_id = "0b0e6f3c-0000-4000-8000-00000000dead"

    def sleeper(run: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, BUILD_RUN_ENV: run}
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)

    orphan, other = sleeper(run_id), sleeper("another-run")
    try:
        assert processes_of_run(run_id) == [orphan.pid]
    finally:
        for proc in (orphan, other):
            proc.kill()
            proc.wait()
