"""Build benchmark: generate + build + publish at 100k and 1M service requests.

Prints each stage's time (the first build parses dbt cold; a rebuild parses warm, as in daily
operation) and the ratio of the whole Dagster rebuild (ingest, dbt build with tests,
lineage, publish) to `dbt build` alone on the same warehouse, measured in the same run: that ratio
is the orchestration overhead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._mesh import mesh_settings, raw_dbt_build, timed  # noqa: E402
from civicmesh.synthetic import generate  # noqa: E402
from orchestration.build import run_build  # noqa: E402


def bench(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-") as tmp:
        settings = mesh_settings(Path(tmp))
        settings.ensure_dirs()
        generate_s = timed(lambda: generate(settings.landing_dir, rows=rows, seed=42))
        reports = []
        cold_s = timed(lambda: reports.append(run_build(settings, emit_line=lambda _line: None)))
        # A rebuild: dbt parses warm (partial parse), as in daily operation.
        warm_s = timed(lambda: reports.append(run_build(settings, emit_line=lambda _line: None)))
        if not all(r.success for r in reports):
            raise SystemExit(f"build failed at {rows} rows: {[r.failed_steps for r in reports]}")
        dbt_s = raw_dbt_build(settings)
    return {"generate_s": generate_s, "cold_s": cold_s, "build_s": warm_s, "dbt_only_s": dbt_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(
        f"{'rows':>10} {'generate s':>11} {'first build s':>14} {'rebuild s':>10} "
        f"{'dbt build s':>12} {'rebuild/dbt':>12}"
    )
    for rows in args.rows:
        r = bench(rows)
        print(
            f"{rows:>10,} {r['generate_s']:>11.1f} {r['cold_s']:>14.1f} {r['build_s']:>10.1f} "
            f"{r['dbt_only_s']:>12.1f} {r['build_s'] / r['dbt_only_s']:>11.2f}x"
        )


if __name__ == "__main__":
    main()
