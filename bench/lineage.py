"""Lineage benchmark: events/s through the durable outbox, and what lineage adds to a build.

The build overhead compares warm rebuilds of the same data with lineage on and off
(`CIVICMESH_LINEAGE=off`), alternated so machine noise hits both; medians are reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
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
median, mesh_settings, timed = _mesh.median, _mesh.mesh_settings, _mesh.timed
outbox_throughput = _load("_outbox").outbox_throughput

from civicmesh.synthetic import generate  # noqa: E402
from orchestration.build import run_build  # noqa: E402


def build_overhead(rows: int, rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="civicmesh-bench-") as tmp:
        settings = mesh_settings(Path(tmp))
        settings.ensure_dirs()
        generate(settings.landing_dir, rows=rows, seed=42)
        run_build(settings, emit_line=lambda _line: None)  # cold parse, not measured
        on, off = [], []
        for _ in range(rounds):
            for switch, times in (("on", on), ("off", off)):
                os.environ["CIVICMESH_LINEAGE"] = switch
                times.append(timed(lambda: run_build(settings, emit_line=lambda _line: None)))
        os.environ.pop("CIVICMESH_LINEAGE", None)
    return median(on), median(off)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = outbox_throughput(Path(tmp), args.events)
    for name, value in rates.items():
        unit = "" if name.startswith("commits") else " events/s"  # a count, not a rate
        print(f"outbox {name.removesuffix('_events_per_s'):<34} {value:>10,.0f}{unit}")
    on, off = build_overhead(args.rows, args.rounds)
    print(
        f"build at {args.rows:,} rows: lineage on {on:.1f}s, off {off:.1f}s (medians of {args.rounds}) "
        f"-> lineage adds {(on - off) / off:+.1%}"
    )


if __name__ == "__main__":
    main()
