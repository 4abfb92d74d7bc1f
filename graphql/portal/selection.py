"""What a user picked on a product's Data, Chart, Map and Download tabs: filters, sort order, page.

Carried in the URL (so every view is linkable and works without JavaScript): `col`, `op`, `val`
repeated once per filter (GraphQL field and operator names, e.g. `col=category&op=eq&val=pothole`),
`sort` and `dir` (ASC|DESC), `first` and `after` (a cursor). Turned into the product field's own
`where` / `orderBy` arguments (GraphQL variables), and into the same arguments as JSON for
`/exports` (gateway/exports.py), so a download holds exactly the rows of the view.

Nothing is judged here: a value is converted to the column's type when it reads as one and
otherwise passed as typed, so the gateway refuses what is wrong (400 `BAD_USER_INPUT`, one
access-log record) with the message GraphQL gives; masked columns are refused there as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from gateway.query import BIGINT, BOOL, COMPARABLE, FLOAT, INT, STRING, type_kind

# GraphQL operator name -> (label, the column kinds it applies to); gateway/types.py's filters.
OPERATORS: dict[str, tuple[str, frozenset[str] | None]] = {
    "eq": ("equals", None),
    "ne": ("is not", None),
    "contains": ("contains", frozenset({STRING})),
    "startsWith": ("starts with", frozenset({STRING})),
    "lt": ("is less than", frozenset(COMPARABLE)),
    "lte": ("is at most", frozenset(COMPARABLE)),
    "gt": ("is more than", frozenset(COMPARABLE)),
    "gte": ("is at least", frozenset(COMPARABLE)),
    "in": ("is one of (comma-separated)", None),
    "isNull": ("is empty (true/false)", None),
}
FILTER_ROWS = 3  # filter lines offered by the form
PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25
MAX_FILTERS = 20


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str


def _value(text: str, kind: str) -> Any:
    """`text` as the column's JSON type when it reads as one; else unchanged (the gateway judges)."""
    text = text.strip()
    try:
        if kind in (INT, BIGINT):
            return int(text)
        if kind == FLOAT:
            return float(text)
    except ValueError:
        return text
    if kind == BOOL and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _operand(f: Filter, kind: str) -> Any:
    if f.op == "isNull":
        return f.value.strip().lower() not in ("false", "no", "0")
    if f.op == "in":
        return [_value(part, kind) for part in f.value.split(",") if part.strip()]
    return _value(f.value, kind)


@dataclass(frozen=True)
class Selection:
    filters: tuple[Filter, ...] = ()
    sort: str | None = None
    direction: str = "ASC"
    first: int = DEFAULT_PAGE_SIZE
    after: str | None = None

    @classmethod
    def from_params(cls, params: QueryParams) -> Selection:
        cols, ops, vals = params.getlist("col"), params.getlist("op"), params.getlist("val")
        filters = tuple(
            Filter(c.strip(), (o or "eq").strip(), v)
            for c, o, v in zip(cols, ops + [""] * len(cols), vals + [""] * len(cols), strict=False)
            if c.strip()
        )[:MAX_FILTERS]
        first = params.get("first", "")
        return cls(
            filters=filters,
            sort=params.get("sort") or None,
            direction="DESC" if params.get("dir", "").upper() == "DESC" else "ASC",
            first=int(first) if first.isdigit() and int(first) in PAGE_SIZES else DEFAULT_PAGE_SIZE,
            after=params.get("after") or None,
        )

    def where(self, kinds: Mapping[str, str]) -> dict[str, Any] | None:
        """The `where` argument (GraphQL names); `kinds` maps a column's field to its type kind."""
        conditions: list[dict[str, Any]] = [
            {f.field: {f.op: _operand(f, kinds.get(f.field, STRING))}} for f in self.filters
        ]
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else {"and": conditions}

    def order_by(self) -> list[dict[str, str]] | None:
        return [{self.sort: self.direction}] if self.sort else None

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """This selection (with `changes`) as query parameters, in a stable order."""
        s = replace(self, **changes)
        out: list[tuple[str, str]] = []
        for f in s.filters:
            out += [("col", f.field), ("op", f.op), ("val", f.value)]
        if s.sort:
            out += [("sort", s.sort), ("dir", s.direction)]
        if s.first != DEFAULT_PAGE_SIZE:
            out.append(("first", str(s.first)))
        if s.after:
            out.append(("after", s.after))
        return out

    def query(self, **changes: Any) -> str:
        """`?…` for a link to this selection (with `changes`), or "" for the default view."""
        params = self.params(**changes)
        return "?" + urlencode(params) if params else ""

    def export_params(self, kinds: Mapping[str, str]) -> list[tuple[str, str]]:
        """`where` and `orderBy` as JSON, the parameters `/exports` takes (no paging: every row)."""
        out: list[tuple[str, str]] = []
        where, order_by = self.where(kinds), self.order_by()
        if where is not None:
            out.append(("where", json.dumps(where, separators=(",", ":"))))
        if order_by is not None:
            out.append(("orderBy", json.dumps(order_by, separators=(",", ":"))))
        return out


def kinds_of(columns: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """GraphQL field -> type kind (gateway/query.py) of a product's columns."""
    return {str(c["field"]): type_kind(str(c["type"])) for c in columns}
