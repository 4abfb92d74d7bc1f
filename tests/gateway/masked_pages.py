"""Walking a product's pages as a reader who sees `email` hashed and reads district D1 only, each
page after the previous page's end cursor, as `gateway.reads.read_page` pages (shared by the
row-order attack tests)."""

from __future__ import annotations

from typing import Any

from gateway.duck import DuckPool
from gateway.query import PageQuery
from meshcore.products import ProductSpec
from meshcore.snapshots import FileOrder
from policies.decision import RowFilter

D1 = RowFilter("district", ("D1",))


def masked_walk(
    pool: DuckPool, spec: ProductSpec, path: str, order: FileOrder, size: int
) -> list[tuple[PageQuery, list[tuple[Any, ...]]]]:
    """(the query, its rows: ticket, hashed e-mail, then the sort key values) of every page of
    `size` rows, until a page says no next page follows."""
    pages: list[tuple[PageQuery, list[tuple[Any, ...]]]] = []
    after = None
    while True:
        query = PageQuery(
            spec=spec,
            path=path,
            columns=["ticket", "email"],
            masks={"email": "hash"},
            row_filter=D1,
            limit=size,
            after=after,
            with_keys=True,
            file_order=order,
        )
        result = pool.run(*query.page_sql())
        pages.append((query, result.rows[:size]))
        if len(result.rows) <= size:
            return pages
        after = query.end_cursor("s", result.rows[size - 1][2:], 0)
