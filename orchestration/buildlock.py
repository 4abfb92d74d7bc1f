"""One build per home at a time, and recovery from a build that was killed.

Every `run_build` holds an exclusive `flock` on `$CIVICMESH_HOME/build.lock` for its whole run:
DuckDB has one writer, and `execute_in_process` ignores Dagster's `max_concurrent_runs`
(ARCHITECTURE §2b). The kernel drops a flock when its holder dies, even by SIGKILL, so the lock is
never stale. The file names the holder (Dagster run id, pid, start time): a second build says whom
it waits for, or refuses at once when asked not to wait (`BuildLocked`; the CLI exits with
`EXIT_BUILD_LOCKED`). A holder that ends normally empties the file, so a build that finds it filled
took over from one that died. It then recovers: the dead build's child processes (dbt), which
inherit `BUILD_RUN_ENV` naming its run, are ended, and its Dagster run, left `STARTED`, is
marked failed.

Runs that Dagster launches (the UI, the schedule, the sensor) take the same lock: the code
location's default executor is `locked_in_process_executor`, Dagster's in-process executor run
under the lock (`execute_in_process`, used by `civicmesh build`, brings its own executor).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

LOCK_FILE = "build.lock"
BUILD_RUN_ENV = "CIVICMESH_BUILD_RUN"  # set for the run's duration; dbt and other children inherit it
EXIT_BUILD_LOCKED = 75  # sysexits.h EX_TEMPFAIL: another build runs, try again later


@dataclass(frozen=True)
class BuildHolder:
    run_id: str
    pid: int
    started_at: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"build {self.run_id} started {self.started_at} by pid {self.pid}"


class BuildLocked(RuntimeError):
    """Another build holds the home's build lock (raised only when not waiting)."""

    def __init__(self, holder: BuildHolder | None) -> None:
        self.holder = holder
        super().__init__(f"another build is running: {holder.describe() if holder else 'holder unknown'}")


def _read_holder(fd: int) -> BuildHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        return BuildHolder(**json.loads(raw)) if raw.strip() else None
    except (ValueError, TypeError):  # a holder killed while writing it
        return None


def _write_holder(fd: int, holder: BuildHolder | None) -> None:
    os.ftruncate(fd, 0)
    if holder is not None:
        os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
    os.fsync(fd)


def _acquire(fd: int, wait: bool, emit_line: Callable[[str], None]) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        holder = _read_holder(fd)
    if not wait:
        raise BuildLocked(holder)
    emit_line(f"waiting for {holder.describe() if holder else 'another build'} to finish")
    fcntl.flock(fd, fcntl.LOCK_EX)


@contextmanager
def build_lock(
    home: Path, run_id: str, wait: bool = True, emit_line: Callable[[str], None] = print
) -> Iterator[BuildHolder | None]:
    """Hold the home's build lock as run `run_id`; yields the holder that died before us, if any.

    While held, `BUILD_RUN_ENV` is set to `run_id` in this process's environment."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
    previous_env = os.environ.get(BUILD_RUN_ENV)
    try:
        _acquire(fd, wait, emit_line)
        dead = _read_holder(fd)
        _write_holder(fd, BuildHolder(run_id, os.getpid(), datetime.now(UTC).isoformat(timespec="seconds")))
        os.environ[BUILD_RUN_ENV] = run_id
        try:
            yield dead
        finally:
            _write_holder(fd, None)  # ended normally: nothing to recover
    finally:
        if previous_env is None:
            os.environ.pop(BUILD_RUN_ENV, None)
        else:
            os.environ[BUILD_RUN_ENV] = previous_env
        os.close(fd)  # releases the lock


def processes_with_env(variable: str, value: str) -> list[int]:
    """Pids of this user's running processes started with `variable=value` (Linux /proc)."""
    marker = f"{variable}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if marker in environ.split(b"\0") and is_running(int(entry.name)):
            found.append(int(entry.name))
    return found


def processes_of_run(run_id: str) -> list[int]:
    """The processes a build started (they inherit `BUILD_RUN_ENV`), itself excluded."""
    return processes_with_env(BUILD_RUN_ENV, run_id)


def end_processes(pids: list[int], grace_seconds: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever still runs after `grace_seconds`."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(is_running(pid) for pid in pids):
        time.sleep(0.1)
    for pid in filter(is_running, pids):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def recover_dead_build(
    dead: BuildHolder | None, emit_line: Callable[[str], None], instance: dg.DagsterInstance
) -> None:
    """After a build died holding the lock: end its children, mark its Dagster run failed."""
    if dead is None:
        return
    orphans = processes_of_run(dead.run_id)
    if orphans:
        emit_line(f"ending {len(orphans)} process(es) left by the dead {dead.describe()}: {orphans}")
        end_processes(orphans)
    run = instance.get_run_by_id(dead.run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(
            run, message=f"the build process (pid {dead.pid}) died; marked failed by the next build"
        )
        emit_line(f"marked the dead {dead.describe()} as failed")


class _LockedExecutor(dg.Executor):
    """An executor run under the home's build lock (waiting for it, as a second build does)."""

    def __init__(self, inner: dg.Executor, home: Path) -> None:
        self._inner = inner
        self._home = home

    @property
    def retries(self) -> Any:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._inner.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        log = plan_context.log.info
        with build_lock(self._home, plan_context.run_id, True, log) as dead:
            recover_dead_build(dead, log, plan_context.instance)
            yield from self._inner.execute(plan_context, execution_plan)


def locked_in_process_executor(home: Path) -> dg.ExecutorDefinition:
    """Dagster's `in_process_executor` (same config) holding `home`'s build lock for the run."""
    inner = dg.in_process_executor

    @dg.executor(name="locked_in_process", config_schema=inner.config_schema)  # type: ignore[call-overload]  # Dagster's stub for the executor decorator
    def _locked(init_context: dg.InitExecutorContext) -> dg.Executor:
        return _LockedExecutor(inner.executor_creation_fn(init_context), home)  # type: ignore[misc]

    return _locked
