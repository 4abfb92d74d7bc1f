"""The keyed row shuffle: a page over rows that tie on every column a reader may sort by, ordered by
the file row number (the baseline), by the shuffle (`gateway.duck.ROW_SHUFFLE_SQL`: DuckDB's own
SHA-256, keyed per file) and by the per-row Python UDF it replaced (HMAC-SHA256, kept here as a copy).

One snapshot of `--rows` rows in one district, all with the same ticket, the e-mail hashed for the
reader (a keyless product whose order may depend on the e-mail: `FileOrder.reveals`); the page is
the gateway's own `PageQuery` (100 rows, the row filter, a `where` with a distinct bound value per
request, so no request repeats), run by the gateway's `DuckPool` from the Parquet file. The three
forms interleaved in rounds so machine load hits each alike; p50 per form and the ratios, with the
load average at start and end.

    .venv/bin/python bench/row_shuffle.py --rows 200000
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import duckdb  # noqa: E402

from gateway.duck import DuckPool, RowShuffleKey  # noqa: E402
from gateway.query import ROW_SHUFFLE, PageQuery  # noqa: E402
from meshcore.products import ColumnSpec, ProductSpec  # noqa: E402
from meshcore.snapshots import FileOrder, quote_ident, snapshot_order, write_snapshot  # noqa: E402
from policies.decision import RowFilter  # noqa: E402

SPEC = ProductSpec(
    department="transportation",
    product="contacts",
    classification="internal",
    owner="o@x.example",
    description="",
    columns=(
        ColumnSpec("ticket", "integer"),
        ColumnSpec("district", "varchar"),
        ColumnSpec("email", "varchar", tags=("pii",), mask="hash"),
    ),
    scope_column="district",
)
ROWS_SQL = """
SELECT 7 AS ticket, 'D1' AS district, 'u' || i || '@mail.example' AS email FROM range({n}) t(i) ORDER BY email
"""
SHUFFLED = FileOrder()  # may depend on any column: the masked reader's ties go to the shuffle
BY_ROW_NUMBER = FileOrder((("district", "ASC"),), frozenset({"district", "ticket"}))  # shows no e-mail
OLD_UDF = "bench_old_row_shuffle"


def old_row_shuffle(key: bytes):
    """The per-row Python UDF the shuffle replaced (gateway/duck.py before), as the baseline."""
    shuffled = hmac.new(hmac.digest(key, b"civicmesh row shuffle", "sha256"), digestmod=hashlib.sha256)

    def row_shuffle(file: str, row: int) -> int:
        mac = shuffled.copy()
        mac.update(f"{file}\x00{row}".encode())
        return int.from_bytes(mac.digest()[:7], "big")

    return row_shuffle


def page(path: str, order: FileOrder, i: int) -> PageQuery:
    return PageQuery(
        spec=SPEC,
        path=path,
        columns=["ticket", "email"],
        masks={"email": "hash"},
        row_filter=RowFilter("district", ("D1",)),
        where={"ticket": {"ne": 1_000_000 + i}},  # every row passes; a value never bound before
        limit=100,
        with_keys=True,
        file_order=order,
    )


def old_page(path: str, i: int) -> tuple[str, list[Any]]:
    """The shuffled page as the gateway wrote it with the old UDF: the UDF call in place of the
    shuffle column wherever the page names it (sort key and ORDER BY), on the file itself."""
    query = page(path, SHUFFLED, i)
    sql, params = query.page_sql()
    shuffled, plain = query._source(True, []), query._source(True)
    assert shuffled in sql and isinstance(params[0], RowShuffleKey)
    call = f"{OLD_UDF}('{Path(path).name}', file_row_number)"
    return sql.replace(shuffled, plain).replace(quote_ident(ROW_SHUFFLE), call), params[1:]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads (the gateway's default)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        with duckdb.connect() as con:
            con.execute(f"CREATE TABLE t AS {ROWS_SQL.format(n=args.rows)}")
            path = str(write_snapshot(con, "t", Path(tmp), snapshot_order(SPEC)).path)
        pool = DuckPool(Path(tmp), "bench key", threads=args.threads, hot_budget_bytes=0)
        udf = old_row_shuffle(b"bench key")  # registered as the gateway registered it
        pool._con.create_function(OLD_UDF, udf, ["VARCHAR", "BIGINT"], "BIGINT", side_effects=False)
        forms = {
            "row number": lambda i: page(path, BY_ROW_NUMBER, i).page_sql(),
            "shuffle (SHA-256 in DuckDB)": lambda i: page(path, SHUFFLED, i).page_sql(),
            "old Python UDF": lambda i: old_page(path, i),
        }
        times: dict[str, list[float]] = {name: [] for name in forms}
        pages: dict[str, list[Any]] = {}
        try:
            for r in range(args.rounds + 1):  # round 0 warms the file's metadata cache
                for j, (name, build) in enumerate(forms.items()):
                    sql, params = build(r * len(forms) + j)
                    started = time.perf_counter()
                    pages[name] = pool.run(sql, params).rows
                    if r:
                        times[name].append(time.perf_counter() - started)
        finally:
            pool.close()
    assert all(len(rows) == 101 for rows in pages.values())
    p50 = {name: statistics.median(ts) * 1000 for name, ts in times.items()}
    print(f"a 100-row page over {args.rows} tied rows, {args.rounds} requests per form, p50:")
    for name, ms in p50.items():
        print(f"  {name:30s} {ms:9.2f} ms")
    base, new, old = p50.values()
    print(f"shuffle / row number: {new / base:.1f}x   old UDF / row number: {old / base:.1f}x")
    print(f"old UDF / shuffle: {old / new:.1f}x")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
