"""Lineage benchmark: events/s through the durable outbox, and what lineage adds to a build.

The build overhead compares warm rebuilds of the same data with lineage on and off
(`CIVICMESH_LINEAGE=off`), alternated so machine noise hits both; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Scripts here share names with packages (lineage, gateway): keep this folder last on the path.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR] + [str(BENCH_DIR)]

from _mesh import median, mesh_settings, timed
from _outbox import outbox_throughput

from civicmesh.synthetic import generate
from orchestration.build import run_build


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
        print(f"outbox {name:<32} {value:>10,.0f} events/s")
    on, off = build_overhead(args.rows, args.rounds)
    print(
        f"build at {args.rows:,} rows: lineage on {on:.1f}s, off {off:.1f}s (medians of {args.rounds}) "
        f"-> lineage adds {(on - off) / off:+.1%}"
    )


if __name__ == "__main__":
    main()
