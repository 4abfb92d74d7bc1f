"""SQL over one snapshot Parquet file, with the decision's masks and row filter applied.

Safety rules: identifiers come only from the product spec (never from the request), every value
is a bound parameter, masks are SQL expressions applied after filtering and paging (so the
Python pseudonym function only sees the rows of one page), and masked columns can be neither
filtered nor sorted on (that would leak the raw values by inference).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway import timetext
from gateway.duck import (
    PSEUDONYM_FUNCTION,
    PSEUDONYM_INT_FUNCTION,
    ROW_SHUFFLE_SQL,
    RowShuffleKey,
    parquet_source,
)
from gateway.errors import bad_input, limit_exceeded
from meshcore.products import ProductSpec
from meshcore.snapshots import FileOrder, quote_ident
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
EXACT_KINDS = {STRING, INT, BIGINT, BOOL, DATE, DATETIME}  # `x = v` holds for one stored value only
JSON_KINDS = {STRING, INT, BIGINT, FLOAT, BOOL, DATE, DATETIME}  # sort keys a keyset cursor can carry
NON_FINITE = ("inf", "-inf", "nan")  # a double sort key's text in a cursor when it is no JSON number
# Types whose values reach Python with no JSON form (Decimal, UUID): orders by them page with
# offset cursors.
NO_JSON_TYPES = ("decimal", "numeric", "uuid")
TEXT_KINDS = {DATE, DATETIME}  # sort keys a keyset cursor carries as DuckDB's text (`timetext`)
TEXT_KEYS = 2  # the version of keyset cursors that carry them so (`Cursor.version`)
HUGEINT_BOUND = 2**127  # a cursor's integers are bound as DuckDB HUGEINT at most
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


ROW_NUMBER = "file_row_number"  # the tie-breaker when a product has no usable key
# ... unless the file's order may show a column masked for the reader (`FileOrder.reveals`): then
# rows tie-break on a pseudonym of their row number keyed by the file (`duck.ROW_SHUFFLE_SQL`), an
# order that shows nothing of the file's, stable within the snapshot: a column the source adds
# (`PageQuery._source`). Its cursor values are those pseudonyms, never row numbers.
ROW_SHUFFLE = "__row_shuffle"


@dataclass(frozen=True)
class Cursor:
    """Where a page ended, within one immutable snapshot.

    Keyset form: the sort key values of the last row (`keys`) and a signature of the order they
    belong to (`order`), so the next page is `WHERE (sort key) > (last values)` — no OFFSET scan,
    and the same rows whatever page size is asked next. The offset form is still read (cursors
    issued before keyset paging) and used for orders whose values have no JSON form, or that end
    in the file row number; it names its order too (`order`, absent from cursors issued before).
    A keyset cursor's `version` says how it carries date and timestamp keys: 2, DuckDB's text
    (`timetext`); 1 (no `v`, cursors issued before), Python's ISO text, which cannot tell
    'infinity' from the largest timestamp.
    """

    snapshot_id: str
    offset: int = 0
    keys: tuple[Any, ...] | None = None
    order: str | None = None
    version: int = 1

    def encode(self) -> str:
        data: dict[str, Any] = {"s": self.snapshot_id}
        if self.keys is not None:
            data["k"] = list(self.keys)
            if self.version != 1:
                data["v"] = self.version
        else:
            data["o"] = self.offset
        if self.order is not None:
            data["h"] = self.order
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            padded = text + "=" * (-len(text) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            if "k" in data:
                keys = data["k"]
                version = data.get("v", 1)
                if not isinstance(keys, list) or not isinstance(data.get("h"), str):
                    raise ValueError("bad keyset cursor")
                if type(version) is not int or version not in (1, TEXT_KEYS):
                    raise ValueError("bad keyset cursor version")
                cursor = cls(snapshot_id=str(data["s"]), keys=tuple(keys), order=data["h"], version=version)
            else:
                order = data.get("h")
                if order is not None and not isinstance(order, str):
                    raise ValueError("bad offset cursor")
                cursor = cls(snapshot_id=str(data["s"]), offset=int(data["o"]), order=order)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise bad_input("Invalid cursor in `after`.") from exc
        if cursor.offset < 0:
            raise bad_input("Invalid cursor in `after`.")
        return cursor


def _to_json(value: Any, kind: str) -> Any:
    """A sort key value as JSON (None when it has no faithful JSON form)."""
    if value is None or (kind == STRING and isinstance(value, str)):
        return value
    if kind in (INT, BIGINT) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == FLOAT and isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # 'inf', '-inf', 'nan': no JSON number
    if kind == BOOL and isinstance(value, bool):
        return value
    raise TypeError(f"no JSON form for a {kind} sort key")


def _from_json(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == STRING and isinstance(value, str):
        return value
    if kind in (INT, BIGINT) and isinstance(value, int) and not isinstance(value, bool):
        if not -HUGEINT_BOUND <= value < HUGEINT_BOUND:  # DuckDB binds no wider integer
            raise ValueError(f"not a {kind} value")
        return value
    if kind == FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)  # OverflowError past a double's range
    if kind == FLOAT and value in NON_FINITE:
        return float(value)
    if kind == BOOL and isinstance(value, bool):
        return value
    raise ValueError(f"not a {kind} value")


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
    after: Cursor | None = None  # keyset: rows strictly after its sort key values; offset: `offset`
    with_keys: bool = False  # also return the sort key values (`__k0, …`) for the end cursor
    kinds: Mapping[str, str] = field(default_factory=dict)  # column -> type kind
    table: str | None = None  # the attached local copy's SQL reference (duck.DuckPool.source), if any
    file_order: FileOrder = field(default_factory=FileOrder)  # how the file stores its rows (DuckPool)
    casts: dict[str, str | None] = field(init=False, default_factory=dict)  # see __post_init__

    def __post_init__(self) -> None:
        if not self.kinds:
            self.kinds = {c.name: type_kind(c.data_type) for c in self.spec.columns}
        # column -> the type its cursor text binds back as; None: no exact text (offset cursors)
        self.casts = {
            c.name: timetext.cast_type(c.data_type)
            for c in self.spec.columns
            if self.kinds.get(c.name) in TEXT_KINDS
        }

    # -- pieces ----------------------------------------------------------------------------------

    def _source(self, row_number: bool, params: list[Any] | None = None) -> str:
        """The hot copy or the file; with the `ROW_SHUFFLE` column when the order ends in it (its
        key, a `RowShuffleKey` of the file's name, appended to `params`: the same for a hot copy
        and its file, and for a path moved with its folder)."""
        shuffled = params is not None and (ROW_SHUFFLE, "ASC") in self.sort_terms()
        # A hot copy: a quoted reference (DuckPool.source); holds file_row_number.
        source = self.table if self.table is not None else parquet_source(self.path, row_number or shuffled)
        if not shuffled or params is None:
            return source
        params.append(RowShuffleKey(Path(self.path).name))
        # Any column of the file by that name is left out: the order would be the file's column's.
        others = f"COLUMNS(lambda c: c <> '{ROW_SHUFFLE}')"
        return f"(SELECT {others}, {ROW_SHUFFLE_SQL} AS {quote_ident(ROW_SHUFFLE)} FROM {source}) AS shuffled"

    def _filter(self, params: list[Any]) -> str:
        clauses: list[str] = []
        if self.row_filter is not None:
            column, values = quote_ident(self.row_filter.column), list(self.row_filter.values)
            if len(values) == 1:  # same rows; DuckDB plans `= ?` far cheaper than `IN (?)` (~0.3 ms)
                params.append(values[0])
                clauses.append(f"{column} = ?")
            else:
                clauses.append(_in_clause(column, values, params))
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

    def sort_terms(self) -> list[tuple[str, str]]:
        """(column, ASC|DESC): the requested order, then the key, when visible, and the file row
        number (or its keyed shuffle) unless the key is known unique — a total order, so pages are
        stable within an immutable snapshot."""
        terms = [(c, d) for c, d in self.order_by]
        for c, _ in terms:
            self._column(c, "sort")
        key = self.spec.key if self.spec.key in self.kinds and self.spec.key not in self.masks else None
        if key is not None and key not in {c for c, _ in terms}:
            terms.append((key, "ASC"))
        if key is not None and key in self.file_order.unique:
            return terms
        # No key, a masked one, or one not known unique (a snapshot older than the build's check
        # that repeats it): rows that tie on everything above are ordered by their place.
        terms.append((ROW_SHUFFLE if self.file_order.reveals(self.masks) else ROW_NUMBER, "ASC"))
        return terms

    def _kind(self, column: str) -> str:
        return BIGINT if column in (ROW_NUMBER, ROW_SHUFFLE) else self.kinds[column]

    def order_signature(self) -> str:
        """16 hex digits naming this order in cursors. A shuffled order's signature names how the
        shuffle is computed too: a cursor of another shuffle (the Python UDF's, before) would resume
        at a value of a different order, skipping and repeating rows; it is refused instead."""
        terms = self.sort_terms()
        text = ";".join(f"{c} {d}" for c, d in terms)
        if (ROW_SHUFFLE, "ASC") in terms:
            text += ";" + ROW_SHUFFLE_SQL
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def keyset(self) -> bool:
        """True if cursors for this order can carry its key values exactly: every kind has a JSON
        form, every date or timestamp an exact text (`timetext.cast_type`; not timestamp_ns, whose
        nanoseconds a cursor would lose and so resume before rows it served), and no term is the
        file row number, which would tell a reader where their rows sit in the file, and so how many
        rows they may not see come before (offset cursors count theirs only). Decided by the order's
        types, never by a page's values: a page ending on a value with no cursor form (a Decimal
        or a UUID, after a NULL one had made keyset cursors) fell back to an offset counted from
        that page, and rows were served again (`NO_JSON_TYPES`)."""
        no_json = {c.name for c in self.spec.columns if c.data_type.lower().strip().startswith(NO_JSON_TYPES)}
        return all(
            c != ROW_NUMBER
            and self._kind(c) in JSON_KINDS
            and c not in no_json
            and (c not in self.casts or self.casts[c] is not None)
            for c, _ in self.sort_terms()
        )

    def _key_json(self, value: Any, column: str) -> Any:
        """A sort key value of the page's last row as cursor JSON (TypeError/ValueError: none)."""
        cast = self.casts.get(column)
        if value is None or cast is None:
            return _to_json(value, self._kind(column))
        return timetext.checked(value, cast)  # the page query selected DuckDB's text

    def _key_value(self, value: Any, column: str) -> Any:
        """A cursor's sort key value as the parameter it binds (ValueError if it is not one)."""
        cast = self.casts.get(column)
        if value is None or cast is None:
            return _from_json(value, self._kind(column))
        assert self.after is not None
        if self.after.version == TEXT_KEYS:
            return timetext.checked(value, cast)
        return timetext.legacy(value, cast)

    def _param(self, column: str) -> str:
        """The placeholder of a sort key value: text binds back as its column's type."""
        cast = self.casts.get(column)
        return "?" if cast is None else f"CAST(? AS {cast})"

    def pinned(self) -> set[str]:
        """Columns the filter holds to one value on every row it passes: the row filter's column
        when it allows one value, and `where` columns with `eq` (or a one-value `in`) at the top
        level or under `and`, of kinds whose `=` means the same value (not floats: -0.0 = 0.0;
        not a timestamp compared with an instant: a `timestamp` column is cast to the session's
        time zone, where two local times, one of them skipped by daylight saving, are one instant)."""
        pinned: set[str] = set()
        if self.row_filter is not None and len(self.row_filter.values) == 1:
            pinned.add(self.row_filter.column)

        def visit(where: Mapping[str, Any]) -> None:
            for key, value in where.items():
                if key == "and":
                    for inner in value or ():
                        visit(inner)
                elif isinstance(value, Mapping) and self.kinds.get(key) in EXACT_KINDS:
                    one = value.get("in_")
                    values = (value.get("eq"), one[0] if one is not None and len(one) == 1 else None)
                    if any(v is not None and not _instant(v) for v in values):
                        pinned.add(key)

        visit(self.where or {})
        return pinned

    def presorted(self) -> bool:
        """True if the snapshot's stored order (`sort_order`, then the file row number: a file's
        rows are in that order by definition) is this page's order on the rows the filter leaves.
        A column pinned to one value is constant over those rows, so it is left out of both orders
        before they are compared. Then the page is read without ORDER BY: DuckDB returns rows in
        stored order (`preserve_insertion_order`), and the scan stops after the page's rows
        instead of sorting every matching row (a scoped "newest first" read of 1M rows: 0.3 vs 3 ms)."""
        if not self.file_order.stated:
            return False
        pinned = self.pinned()
        stored = [t for t in (*self.file_order.stated, (ROW_NUMBER, "ASC")) if t[0] not in pinned]
        wanted = [t for t in self.sort_terms() if t[0] not in pinned]
        # `wanted` still ends with the key (or the row number): a total order, so a stored order
        # that starts with it sorts the rows the same way. (A pinned key leaves at most one row,
        # which ORDER BY sorts at no cost: no rule for it.)
        return stored[: len(wanted)] == wanted

    def _order(self) -> tuple[str, bool]:
        """ORDER BY clause (NULLs last in both directions, as the keyset predicate assumes) and
        whether it needs the file row number; no clause when the stored order is the page's."""
        if self.presorted():
            return "", False
        terms = self.sort_terms()
        sql = ", ".join(f"{quote_ident(c)} {d} NULLS LAST" for c, d in terms)
        return " ORDER BY " + sql, any(c in (ROW_NUMBER, ROW_SHUFFLE) for c, _ in terms)

    def _after(self, params: list[Any]) -> str:
        """`(sort key) > (cursor values)` in the sort's own directions, NULLs last, as bound
        parameters: OR over i of (terms before i equal AND term i strictly beyond)."""
        assert self.after is not None and self.after.keys is not None
        terms = self.sort_terms()
        if self.after.order != self.order_signature() or len(self.after.keys) != len(terms):
            raise bad_input("The cursor in `after` belongs to a different `orderBy`.")
        if not self.keyset():  # a file row number (cursors issued before 0c0ec2e): where rows sit
            raise bad_input("The cursor in `after` is no longer valid; start again without `after`.")
        try:
            values = [self._key_value(v, c) for v, (c, _) in zip(self.after.keys, terms, strict=True)]
        except timetext.Ambiguous as exc:
            raise bad_input(
                "The cursor in `after` was issued before cursors could tell a date or timestamp of "
                "'infinity' from the largest (or '-infinity' from the smallest) one; "
                "start again without `after`."
            ) from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise bad_input("Invalid cursor in `after`.") from exc
        ors: list[str] = []
        for i, (column, direction) in enumerate(terms):
            if values[i] is None:
                continue  # nothing sorts after NULL (NULLs last)
            ands: list[str] = []
            for (c, _), v in zip(terms[:i], values[:i], strict=True):
                if v is None:
                    ands.append(f"{quote_ident(c)} IS NULL")
                else:
                    ands.append(f"{quote_ident(c)} = {self._param(c)}")
                    params.append(v)
            x = quote_ident(column)
            ands.append(f"({x} {'>' if direction == 'ASC' else '<'} {self._param(column)} OR {x} IS NULL)")
            params.append(values[i])
            ors.append("(" + " AND ".join(ands) + ")")
        return "(" + (" OR ".join(ors) if ors else "FALSE") + ")"

    def end_cursor(self, snapshot_id: str, last_keys: Sequence[Any] | None, offset: int) -> Cursor:
        """The cursor after a page: keyset when the last row's sort values have a JSON form."""
        if last_keys is not None and self.keyset():
            try:
                terms = self.sort_terms()
                keys = tuple(self._key_json(v, c) for v, (c, _) in zip(last_keys, terms, strict=True))
                return Cursor(snapshot_id, keys=keys, order=self.order_signature(), version=TEXT_KEYS)
            except (TypeError, ValueError):
                pass
        return Cursor(snapshot_id, offset=offset, order=self.order_signature())

    # -- statements ------------------------------------------------------------------------------

    def page_sql(self) -> tuple[str, list[Any]]:
        """Rows after the cursor (keyset) or from `offset`, `limit`+1 of them (to know whether a next
        page exists), masked. The sort key values follow the output columns as `__k0, __k1, …`."""
        params: list[Any] = []
        order, row_number = self._order()
        source = self._source(row_number, params)  # its parameter, if any, comes before the filter's
        where = self._filter(params)
        if self.after is not None and self.after.keys is not None:
            where = (where + " AND " if where else " WHERE ") + self._after(params)
        elif self.after is not None and self.after.order not in (None, self.order_signature()):
            raise bad_input("The cursor in `after` belongs to a different `orderBy`.")
        terms = self.sort_terms() if self.with_keys and self.keyset() else []
        keys = [quote_ident(c) for c, _ in terms]
        raw = ", ".join(
            [quote_ident(c) for c in self.columns] + [f'{k} AS "__k{i}"' for i, k in enumerate(keys)]
        )
        inner = f"SELECT {raw or '1 AS _none'} FROM {source}{where}{order} LIMIT ? OFFSET ?"
        params.extend([self.limit + 1, self.offset])  # last two, always (exports rewrite the limit)
        outer = ", ".join(
            [
                f"{mask_expression(c, self.kinds[c], self.masks[c])} AS {quote_ident(c)}"
                if c in self.masks
                else quote_ident(c)
                for c in self.columns
            ]
            # Dates and timestamps as DuckDB's text: their Python values clamp 'infinity' (`timetext`).
            # Cast here, on the page's rows only: in the inner query DuckDB casts every row it sorts
            # (a page 1M rows deep: 43 vs 12 ms, bench/cursor_keys.py).
            + [
                f'CAST("__k{i}" AS VARCHAR) AS "__k{i}"' if c in self.casts else f'"__k{i}"'
                for i, (c, _) in enumerate(terms)
            ]
        )
        # The outer projection keeps the inner order (DuckDB preserves insertion order).
        return f"SELECT {outer or '_none'} FROM ({inner}) AS page", params

    def count_sql(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        where = self._filter(params)
        return f"SELECT count(*) FROM {self._source(False)}{where}", params


def _instant(value: Any) -> bool:
    """True for a time-zone-aware datetime (an instant, not one local time)."""
    return isinstance(value, datetime) and value.tzinfo is not None


def _in_clause(expr: str, values: list[Any], params: list[Any]) -> str:
    if len(values) > MAX_IN_VALUES:
        raise limit_exceeded(f"`in` takes at most {MAX_IN_VALUES} values.")
    if not values:
        return "FALSE"
    params.extend(values)
    return f"{expr} IN ({', '.join('?' for _ in values)})"
