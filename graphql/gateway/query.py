"""SQL over one snapshot Parquet file, with the decision's masks and row filter applied.

Safety rules: identifiers come only from the product spec (never from the request), every value
is a bound parameter, masks are SQL expressions applied after filtering and paging (so the
Python pseudonym function only sees the rows of one page), and masked columns can be neither
filtered nor sorted on (that would leak the raw values by inference).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from civicmesh.products import ProductSpec
from civicmesh.snapshots import quote_ident
from gateway.duck import PSEUDONYM_FUNCTION, PSEUDONYM_INT_FUNCTION
from gateway.errors import bad_input, limit_exceeded
from policies.decision import RowFilter

MAX_IN_VALUES = 1000
MAX_WHERE_DEPTH = 8

STRING, INT, BIGINT, FLOAT, BOOL, DATE, DATETIME, OTHER = (
    "string",
    "int",
    "bigint",
    "float",
    "bool",
    "date",
    "datetime",
    "other",
)


def type_kind(data_type: str) -> str:
    """Classify a contract/DuckDB type name into the few kinds the API distinguishes."""
    t = data_type.lower().strip()
    if t.startswith(("varchar", "text", "string", "char", "uuid")):
        return STRING
    if t in {"integer", "int", "int4", "smallint", "int2", "tinyint", "int1", "usmallint", "utinyint"}:
        return INT
    if t in {"bigint", "int8", "hugeint", "uinteger", "ubigint", "long"}:
        return BIGINT
    if t.startswith(("double", "float", "real", "decimal", "numeric")):
        return FLOAT
    if t in {"boolean", "bool"}:
        return BOOL
    if t == "date":
        return DATE
    if t.startswith(("timestamp", "datetime")):
        return DATETIME
    return OTHER


COMPARABLE = {STRING, INT, BIGINT, FLOAT, DATE, DATETIME}
OPERATORS = ("eq", "ne", "in_", "lt", "lte", "gt", "gte", "between", "is_null", "contains", "starts_with")


def mask_expression(column: str, kind: str, mask: str) -> str:
    """A SQL expression that yields the masked value with the column's own type."""
    x = quote_ident(column)
    if mask == "hash":
        if kind == STRING:
            return f"{PSEUDONYM_FUNCTION}(CAST({x} AS VARCHAR))"
        if kind == BIGINT:
            return f"{PSEUDONYM_INT_FUNCTION}(CAST({x} AS BIGINT))"
        if kind == INT:  # GraphQL Int is 32-bit
            return f"CAST({PSEUDONYM_INT_FUNCTION}(CAST({x} AS BIGINT)) % 2147483647 AS INTEGER)"
    elif mask == "partial":
        if kind == STRING:
            # Short values would be shown whole, so they become '***' only.
            return (
                f"CASE WHEN length({x}) > 4 THEN '***' || right({x}, 4) "
                f"WHEN {x} IS NULL THEN NULL ELSE '***' END"
            )
    elif mask == "generalize":
        if kind == FLOAT:
            return f"round({x}, 2)"  # ~1 km for coordinates
        if kind == DATE:
            return f"CAST(date_trunc('month', {x}) AS DATE)"
        if kind == DATETIME:
            return f"date_trunc('month', {x})"
        if kind in (INT, BIGINT):
            return f"({x} // 10) * 10"
    return "NULL"  # redact, and any mask that has no type-preserving form for this column


@dataclass(frozen=True)
class Cursor:
    snapshot_id: str
    offset: int

    def encode(self) -> str:
        raw = json.dumps({"s": self.snapshot_id, "o": self.offset}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            padded = text + "=" * (-len(text) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            cursor = cls(snapshot_id=str(data["s"]), offset=int(data["o"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise bad_input("Invalid cursor in `after`.") from exc
        if cursor.offset < 0:
            raise bad_input("Invalid cursor in `after`.")
        return cursor


@dataclass
class PageQuery:
    """Everything needed to read one page of a product, already governed."""

    spec: ProductSpec
    path: str
    columns: Sequence[str]  # output columns (names from the spec)
    masks: Mapping[str, str] = field(default_factory=dict)
    row_filter: RowFilter | None = None
    where: Mapping[str, Any] | None = None  # {"and"|"or"|"not"|column: {operator: value}}
    order_by: Sequence[tuple[str, str]] = ()  # (column, ASC|DESC)
    limit: int = 100
    offset: int = 0
    kinds: Mapping[str, str] = field(default_factory=dict)  # column -> type kind
    table: str | None = None  # an in-memory copy of the snapshot (duck.DuckPool.source), if loaded

    def __post_init__(self) -> None:
        if not self.kinds:
            self.kinds = {c.name: type_kind(c.data_type) for c in self.spec.columns}

    # -- pieces ----------------------------------------------------------------------------------

    def _source(self, row_number: bool) -> str:
        if self.table is not None:
            return quote_ident(self.table)  # holds file_row_number as a column
        path = self.path.replace("'", "''")  # a catalog path, never user input
        extra = ", file_row_number = true" if row_number else ""
        return f"read_parquet('{path}'{extra})"

    def _filter(self, params: list[Any]) -> str:
        clauses: list[str] = []
        if self.row_filter is not None:
            clauses.append(
                _in_clause(quote_ident(self.row_filter.column), list(self.row_filter.values), params)
            )
        if self.where:
            clauses.append(self._where(self.where, params, depth=0))
        return " WHERE " + " AND ".join(clauses) if clauses else ""

    def _column(self, name: str, purpose: str) -> str:
        if name not in self.kinds:
            raise bad_input(f"Unknown column {name!r}.")
        if name in self.masks:
            raise bad_input(f"Column {name!r} is masked for you and cannot be used to {purpose}.")
        return quote_ident(name)

    def _where(self, where: Mapping[str, Any], params: list[Any], depth: int) -> str:
        if depth > MAX_WHERE_DEPTH:
            raise limit_exceeded(f"`where` is nested more than {MAX_WHERE_DEPTH} levels deep.")
        parts: list[str] = []
        for key, value in where.items():
            if value is None:
                continue
            if key == "and":
                parts.extend(f"({self._where(w, params, depth + 1)})" for w in value)
            elif key == "or":
                ors = [f"({self._where(w, params, depth + 1)})" for w in value]
                parts.append("(" + (" OR ".join(ors) if ors else "FALSE") + ")")
            elif key == "not":
                parts.append(f"NOT ({self._where(value, params, depth + 1)})")
            else:
                parts.extend(self._predicates(key, value, params))
        return " AND ".join(parts) if parts else "TRUE"

    def _predicates(self, column: str, ops: Mapping[str, Any], params: list[Any]) -> list[str]:
        x = self._column(column, "filter")
        kind = self.kinds[column]
        out: list[str] = []
        for op, value in ops.items():
            if value is None:
                continue
            if op not in OPERATORS:
                raise bad_input(f"Unknown operator {op!r}.")
            if op in ("lt", "lte", "gt", "gte", "between") and kind not in COMPARABLE:
                raise bad_input(f"Column {column!r} cannot be compared with {op!r}.")
            if op in ("contains", "starts_with") and kind != STRING:
                raise bad_input(f"{op!r} needs a text column.")
            if op == "eq":
                out.append(f"{x} = ?")
                params.append(value)
            elif op == "ne":
                out.append(f"{x} <> ?")
                params.append(value)
            elif op == "in_":
                out.append(_in_clause(x, list(value), params))
            elif op in ("lt", "lte", "gt", "gte"):
                out.append(f"{x} {({'lt': '<', 'lte': '<=', 'gt': '>', 'gte': '>='})[op]} ?")
                params.append(value)
            elif op == "between":
                if len(value) != 2:
                    raise bad_input("`between` takes exactly two values.")
                out.append(f"{x} BETWEEN ? AND ?")
                params.extend(value)
            elif op == "is_null":
                out.append(f"{x} IS NULL" if value else f"{x} IS NOT NULL")
            elif op == "contains":
                out.append(f"contains({x}, ?)")
                params.append(value)
            elif op == "starts_with":
                out.append(f"starts_with({x}, ?)")
                params.append(value)
        return out

    def _order(self) -> tuple[str, bool]:
        """ORDER BY clause (a total order, so offsets are stable within an immutable snapshot)
        and whether it needs the file row number as the final tie-breaker."""
        terms = [f"{self._column(c, 'sort')} {d}" for c, d in self.order_by]
        key = self.spec.key
        if key and key in self.kinds and key not in self.masks:
            terms.append(f"{quote_ident(key)} ASC")
            return " ORDER BY " + ", ".join(terms), False
        terms.append("file_row_number ASC")
        return " ORDER BY " + ", ".join(terms), True

    # -- statements ------------------------------------------------------------------------------

    def page_sql(self) -> tuple[str, list[Any]]:
        """Rows `offset .. offset+limit` (+1 to know whether a next page exists), masked."""
        params: list[Any] = []
        where = self._filter(params)
        order, row_number = self._order()
        raw = ", ".join(quote_ident(c) for c in self.columns) or "1 AS _none"
        inner = f"SELECT {raw} FROM {self._source(row_number)}{where}{order} LIMIT ? OFFSET ?"
        params.extend([self.limit + 1, self.offset])
        outer = ", ".join(
            f"{mask_expression(c, self.kinds[c], self.masks[c])} AS {quote_ident(c)}"
            if c in self.masks
            else quote_ident(c)
            for c in self.columns
        )
        # The outer projection keeps the inner order (DuckDB preserves insertion order).
        return f"SELECT {outer or '_none'} FROM ({inner}) AS page", params

    def count_sql(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        where = self._filter(params)
        return f"SELECT count(*) FROM {self._source(False)}{where}", params


def _in_clause(expr: str, values: list[Any], params: list[Any]) -> str:
    if len(values) > MAX_IN_VALUES:
        raise limit_exceeded(f"`in` takes at most {MAX_IN_VALUES} values.")
    if not values:
        return "FALSE"
    params.extend(values)
    return f"{expr} IN ({', '.join('?' for _ in values)})"
