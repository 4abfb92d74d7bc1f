"""Deterministic synthetic city data: landing files `<out>/<department>/<table>.parquet`.

The same seed and row count give byte-identical files: every table draws from its own child
generator of `np.random.default_rng(seed)`, and the period ends on a date derived from the seed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from civicmesh.synthetic import environment, finance, hr, public_works, transportation
from civicmesh.synthetic.common import Period, TableSpec, write_parquet_atomic

TABLES: tuple[TableSpec, ...] = (
    *public_works.TABLES,
    *transportation.TABLES,
    *environment.TABLES,
    *finance.TABLES,
    *hr.TABLES,
)
MIN_ROWS, MAX_ROWS = 1_000, 10_000_000

__all__ = ["MAX_ROWS", "MIN_ROWS", "TABLES", "Period", "generate", "generate_city", "planned_rows"]


def planned_rows(rows: int) -> dict[str, int]:
    """Rows per `department/table` for a given `--rows` (the size of service_requests)."""
    return {f"{t.department}/{t.table}": t.rows_for(rows) for t in TABLES}


def generate(
    out_dir: Path,
    rows: int = 20_000,
    seed: int = 42,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, Path]:
    """Write every landing table; returns `department/table` -> path. `on_progress(table, rows)`."""
    if not MIN_ROWS <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be between {MIN_ROWS:,} and {MAX_ROWS:,}, got {rows:,}")
    period = Period.for_seed(seed)
    # One independent stream per table, so a table's bytes do not depend on the others.
    streams = np.random.default_rng(seed).spawn(len(TABLES))
    written: dict[str, Path] = {}
    for spec, rng in zip(TABLES, streams, strict=True):
        name = f"{spec.department}/{spec.table}"
        path = out_dir / spec.department / f"{spec.table}.parquet"
        report: Callable[[int], None] = functools.partial(on_progress, name) if on_progress else _ignore
        write_parquet_atomic(path, spec.schema, spec.chunks(rng, spec.rows_for(rows), period), report)
        written[name] = path
    return written


generate_city = generate  # the name `civicmesh demo` imports


def _ignore(rows: int) -> None:
    """No progress reporting."""
