"""A build in a process a shell started in the background leaves SIGTERM as it found it.

Such a process ignores SIGINT; Dagster maps SIGTERM to SIGINT's handler as an in-process run ends,
so without `orchestration.build.sigterm_kept` SIGTERM became ignored: `kill` could not stop the
process, nor any child it started afterwards (two tests' servers once outlived their SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys

CHILD = """
import signal, dagster as dg
from orchestration.build import sigterm_kept

@dg.asset
def one() -> int:
    return 1

with sigterm_kept():
    dg.materialize([one])
print(signal.getsignal(signal.SIGTERM).name)
"""


def _ignore_sigint() -> None:  # as a non-interactive shell starts a background job
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigterm_still_stops_a_background_process_after_an_in_process_run(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={"DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        preexec_fn=_ignore_sigint,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["SIG_DFL"], done.stdout
