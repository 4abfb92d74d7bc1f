"""Timestamp cursors: DuckDB's text (`gateway.timetext`) vs Python values vs offsets, deep pages.

One process, one 1M-row snapshot keyed by `id` with a timestamp column `t` (a few 'infinity'), read
through `DuckPool.run` (no result cache) from the Parquet file and from its hot copy. Page 100 rows
ordered by `t DESC` after a cursor at a random depth (uniform over the rows, a new depth each
request, so no two requests are the same):

  text      this change: the key selected as `CAST(t AS VARCHAR)`, bound back as `CAST(? AS TIMESTAMP)`
  python    before: the key selected as is, bound as a Python datetime (wrong at 'infinity')
  offset    the other design: OFFSET depth (no key values in the cursor)

The forms are interleaved in rounds so machine load hits each alike; prints p50/p95 per form and
source, the ratios text/python and offset/text, and the load average at start and end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # bench/ would shadow the packages
sys.path.insert(1, str(ROOT / "graphql"))

import duckdb  # noqa: E402

from gateway.duck import DuckPool  # noqa: E402
from gateway.query import Cursor, PageQuery  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.snapshots import FileOrder, file_order, snapshot_order, write_snapshot  # noqa: E402

SPEC = ProductSpec(
    department="d",
    product="p",
    classification="internal",
    owner="o@x.example",
    description="",
    columns=(ColumnSpec("id", "integer"), ColumnSpec("t", "timestamp")),
    key="id",
)
PAGE = 100


def snapshot(home: Path, rows: int) -> tuple[str, FileOrder]:
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE t AS SELECT CAST(i AS INTEGER) AS id, CASE WHEN i % 100000 = 7 THEN "
            "'infinity'::TIMESTAMP ELSE TIMESTAMP '2020-01-01' + INTERVAL (i * 37 % 1000003) SECOND END AS t "
            f"FROM range({rows}) r(i)"
        )
        path = str(write_snapshot(con, "t", home, snapshot_order(SPEC), unique=("id",)).path)
        return path, file_order(con, path)


def requests(
    pool: DuckPool, path: str, order: FileOrder, table: str | None, depth: int
) -> dict[str, tuple[str, list]]:
    """The three forms' (SQL, params) for the page after row `depth` of the order."""
    base = PageQuery(
        spec=SPEC,
        path=path,
        table=table,
        file_order=order,
        columns=["id", "t"],
        order_by=[("t", "DESC")],
        limit=PAGE,
        with_keys=True,
    )
    keys = pool.run(
        f"SELECT CAST(t AS VARCHAR), t, id FROM {table or f'read_parquet({path!r})'} "
        "ORDER BY t DESC NULLS LAST, id LIMIT 1 OFFSET ?",
        [depth],
    ).rows[0]
    text_cursor = Cursor("s", keys=(keys[0], keys[2]), order=base.order_signature(), version=2)
    sql, params = dataclasses.replace(base, after=text_cursor).page_sql()
    # Before this change: the raw key, bound as the Python value.
    python_sql = re.sub(r'CAST\(("__k[0-9]+") AS VARCHAR\) AS "__k[0-9]+"', r"\1", sql)
    python_sql = python_sql.replace("CAST(? AS TIMESTAMP)", "?")
    assert "CAST" not in python_sql, python_sql
    python_params = [keys[1] if p == keys[0] else p for p in params]
    offset = dataclasses.replace(base, offset=depth + 1).page_sql()
    return {"text": (sql, params), "python": (python_sql, python_params), "offset": offset}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rng = random.Random(16)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        path, order = snapshot(home, args.rows)
        pool = DuckPool(home, "key", threads=2)
        try:
            deadline = time.monotonic() + 300
            while (table := pool.source(path, Path(path).stat().st_size)) is None:
                assert time.monotonic() < deadline, "the hot copy did not load"
                time.sleep(0.05)
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for source, ref in (("file", None), ("hot", table)):
                    forms = requests(pool, path, order, ref, rng.randrange(args.rows - PAGE - 1))
                    for form, (sql, params) in forms.items():
                        start = time.perf_counter()
                        rows = pool.run(sql, params).rows
                        times.setdefault((form, source), []).append((time.perf_counter() - start) * 1000)
                        assert len(rows) == PAGE + 1, (form, len(rows))
        finally:
            pool.close()
    p50 = {k: statistics.median(v) for k, v in times.items()}
    for (form, source), samples in sorted(times.items()):
        p95 = statistics.quantiles(samples, n=20)[-1]
        print(f"{form:7} {source:4}  p50 {p50[form, source]:7.2f} ms  p95 {p95:7.2f} ms")
    for source in ("file", "hot"):
        print(
            f"{source}: text/python {p50['text', source] / p50['python', source]:.2f}x, "
            f"offset/text {p50['offset', source] / p50['text', source]:.2f}x"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
