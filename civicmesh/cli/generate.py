"""`civicmesh generate`: write deterministic synthetic landing files, with a progress bar on stderr."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from civicmesh.cli import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="write synthetic city data as landing files")
    parser.add_argument("--rows", type=int, default=20_000, help="service requests (1,000..10,000,000)")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same bytes")
    parser.add_argument(
        "--out", type=Path, default=None, help="landing folder (default: CIVICMESH_HOME/landing)"
    )
    parser.set_defaults(handler=handler)


def handler(args: argparse.Namespace) -> int:
    # Imported here so other commands do not pay for numpy/pyarrow.
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from civicmesh import synthetic
    from meshcore.settings import Settings

    if not synthetic.MIN_ROWS <= args.rows <= synthetic.MAX_ROWS:
        raise CommandError(f"--rows must be between {synthetic.MIN_ROWS:,} and {synthetic.MAX_ROWS:,}")
    if args.seed < 0:
        raise CommandError("--seed must be a non-negative integer")
    out = (args.out or Settings.from_env().landing_dir).expanduser().resolve()
    plan = synthetic.planned_rows(args.rows)
    console = Console(stderr=True)
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks = {name: progress.add_task(name, total=rows) for name, rows in plan.items()}
        try:
            written = synthetic.generate(
                out, rows=args.rows, seed=args.seed, on_progress=lambda t, n: progress.advance(tasks[t], n)
            )
        except OSError as exc:
            raise CommandError(f"cannot write landing files under {out}: {exc}") from exc
    elapsed = time.perf_counter() - started
    console.print(f"wrote {sum(plan.values()):,} rows in {len(written)} files to {out} in {elapsed:.1f}s")
    return 0
