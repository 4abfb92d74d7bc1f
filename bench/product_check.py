"""How long an owner waits for `civicmesh product check`: `python bench/product_check.py`.

On a private copy of the dbt project, after one warm-up run of each (dbt's partial parse in place,
as in an owner's edit-check loop), times `civicmesh product check PRODUCT --no-impact` (dbt parse +
compile in-process, the scratch database, contract, PII gate and policy lint) against the baseline a
check cannot avoid: `dbt parse` alone, as a subprocess, on the same project. Each run is a fresh
process, as from a shell or a pre-commit hook. Prints both medians, their ratio and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall seconds of `runs` runs after one warm-up; a failed run stops the benchmark."""
    seconds = []
    for attempt in range(runs + 1):
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        if attempt:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--product", default="public_works.service_requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "transforms"
        shutil.copytree(ROOT / "transforms", project, ignore=shutil.ignore_patterns("target", "logs"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICMESH_")}
        env.update(CIVICMESH_HOME=str(Path(tmp) / "home"), CIVICMESH_DBT_PROJECT_DIR=str(project))
        env.update(CIVICMESH_WAREHOUSE=str(Path(tmp) / "baseline" / "warehouse.duckdb"))
        (Path(tmp) / "baseline").mkdir()
        parse = [
            str(BIN / "dbt"),
            "parse",
            "--quiet",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
        ]
        parse += ["--target-path", str(Path(tmp) / "baseline" / "target")]
        baseline = timed(parse, env, args.runs)
        check = timed(
            [str(BIN / "civicmesh"), "product", "check", args.product, "--no-impact"], env, args.runs
        )
    print(f"dbt parse (baseline):           {baseline:6.2f} s  (median of {args.runs})")
    print(f"civicmesh product check:        {check:6.2f} s  ({check / baseline:.2f}x the baseline)")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
