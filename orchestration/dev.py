"""`make dagster`: Dagster's UI and daemon (`dagster dev`) over the instance `civicmesh build` uses.

DAGSTER_HOME is resolved from CIVICMESH_HOME by the same function the build uses
(`ensure_dagster_home`), so the UI shows the CLI's runs whatever home is configured. The process
then becomes `dagster dev` (exec), with SIGINT reset to its default: `dagster dev` maps SIGTERM to
its SIGINT handler, and a shell starts a background job with SIGINT ignored, so without the reset
a SIGTERM would be ignored too (ARCHITECTURE §2b).

    python -m orchestration.dev [--port 3000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from meshcore.settings import Settings
from orchestration.build import ensure_dagster_home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestration.dev", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    settings.automation_on  # noqa: B018 - refuse a wrong CIVICMESH_AUTOMATION before starting
    home = ensure_dagster_home(settings)
    print(f"DAGSTER_HOME={home} (from CIVICMESH_HOME={settings.home})", file=sys.stderr, flush=True)
    os.environ["CIVICMESH_HOME"] = str(settings.home)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    dagster = str(Path(sys.executable).parent / "dagster")
    os.execv(dagster, [dagster, "dev", "-m", "orchestration.definitions", "-p", str(args.port)])


if __name__ == "__main__":
    main()
