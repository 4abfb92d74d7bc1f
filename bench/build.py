"""Build benchmark: generate + build + publish at 100k and 1M service requests.

Prints each stage's time (the first build parses dbt cold; a rebuild parses warm, as in daily
operation) and the ratio of the whole Dagster rebuild (ingest, dbt build with tests,
lineage, publish) to `dbt build` alone on the same warehouse, measured in the same run: that ratio
is the orchestration overhead.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

# bench/ holds scripts named like packages (lineage, gateway): keep it off sys.path and load the
# private helper modules by file.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


_mesh = _load("_mesh")
mesh_settings, raw_dbt_build, timed = _mesh.mesh_settings, _mesh.raw_dbt_build, _mesh.timed

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
