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

# Run as `python bench/NAME.py`: Python puts bench/ first on the path, where lineage.py and
# gateway.py would shadow the packages of the same name. The repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench._mesh import median, mesh_settings, timed  # noqa: E402
from bench._outbox import outbox_throughput  # noqa: E402
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
