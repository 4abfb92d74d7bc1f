"""Immutable Parquet snapshots, written atomically and named by their content, and the check that
a file still holds what was published (its SHA-256, stored in the catalog at publish)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from meshcore.products import SORT_DIRECTIONS, ProductSpec

ROW_GROUP_SIZE = 32_768  # small enough that a district/category filter prunes most row groups
# Parquet key-value metadata naming the order the rows were written in: [[column, "ASC"|"DESC"], ...],
# NULLs last in both directions. Absent (files written before it): the order is unknown.
SORT_ORDER_KEY = "civicmesh_sort_order"
# ... and what that order depends on: {"columns": [every column the rows were sorted by],
# "total": whether no two rows tie on them}. Absent: it may depend on any column.
ORDERED_BY_KEY = "civicmesh_ordered_by"
# [columns no two rows share a value of (NULL counting as a value)], checked as the file was written.
UNIQUE_KEY = "civicmesh_unique"

SortOrder = tuple[tuple[str, str], ...]  # ((column, ASC|DESC), ...), NULLs last


class RepeatedValues(ValueError):
    """A column declared unique repeats a value (`write_snapshot`); the message quotes no value."""


@dataclass(frozen=True)
class FileOrder:
    """How a snapshot file's rows are ordered, as the file states it (`write_snapshot`).

    `stated`: the order a reader can rely on (a start of the written order; () if none).
    `unique`: columns no two rows share a value of, as checked when the file was written (or by
    a reader since: `gateway.duck.DuckPool.read_file_order`).
    `ordered_by`: every column the rows' order depends on, when the file was sorted by them into
    a total order (no two rows tie, so nothing else decided their places); None when the file
    does not say so (written before, elsewhere, or with ties left in input order)."""

    stated: SortOrder = ()
    ordered_by: frozenset[str] | None = None
    unique: frozenset[str] = frozenset()  # columns known to repeat no value (`UNIQUE_KEY`)

    def reveals(self, hidden: Iterable[str]) -> bool:
        """True if the rows' places in the file (their row numbers) may show something of the
        `hidden` columns (masked for a reader): the file may be ordered by one of them."""
        hidden = set(hidden)
        return bool(hidden) and (self.ordered_by is None or not self.ordered_by.isdisjoint(hidden))


@dataclass(frozen=True)
class WrittenSnapshot:
    path: Path
    checksum: str
    row_count: int
    byte_size: int
    schema: tuple[tuple[str, str], ...]


def file_checksum(path: Path) -> str:
    """SHA-256 of the file as hex, streamed in 1 MiB blocks (constant memory, any size)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def integrity_problem(path: Path, checksum: str, byte_size: int | None = None) -> str | None:
    """None if `path` still has the SHA-256 `checksum` (and `byte_size`) stored at publish, else
    what is wrong, in words that never name the path (callers decide who may see it):
    "file missing", "size 123 B, expected 456 B", "checksum mismatch (...)", "unreadable (...)"."""
    try:
        size = path.stat().st_size
        if byte_size is not None and size != byte_size:
            return f"size {size} B, expected {byte_size} B"
        found = file_checksum(path)
    except FileNotFoundError:
        return "file missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    if found != checksum:
        return f"checksum mismatch (sha256 {found[:12]}..., expected {checksum[:12]}...)"
    return None


def fsync_dir(path: Path) -> None:
    """Make a rename or new file in `path` durable (fsync of the folder itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_order(con: duckdb.DuckDBPyConnection, path: str | Path) -> FileOrder:
    """The order snapshot file `path` states (`write_snapshot`): FileOrder() when it states none
    or an unreadable one, so callers assume no order and that it may depend on any column."""
    rows = dict(
        con.execute(
            f"SELECT key, value FROM parquet_kv_metadata({quote_literal(path)}) WHERE key IN (?, ?, ?)",
            [SORT_ORDER_KEY.encode(), ORDERED_BY_KEY.encode(), UNIQUE_KEY.encode()],
        ).fetchall()
    )
    return FileOrder(
        _stated(rows.get(SORT_ORDER_KEY.encode())),
        _ordered_by(rows.get(ORDERED_BY_KEY.encode())),
        _names(rows.get(UNIQUE_KEY.encode())),
    )


def _names(value: bytes | None) -> frozenset[str]:
    try:
        names = json.loads(value) if value is not None else []
    except ValueError:
        return frozenset()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return frozenset()
    return frozenset(names)


def _stated(value: bytes | None) -> SortOrder:
    try:
        terms = json.loads(value) if value is not None else []
        order = tuple((str(c), str(d)) for c, d in terms if isinstance(c, str) and d in SORT_DIRECTIONS)
    except (ValueError, TypeError):
        return ()
    return order if len(order) == len(terms) else ()


def _ordered_by(value: bytes | None) -> frozenset[str] | None:
    try:
        stated = json.loads(value) if value is not None else {}
        columns = stated.get("columns")
        if stated.get("total") is not True or not isinstance(columns, list):
            return None
        if not all(isinstance(c, str) for c in columns):
            return None
        return frozenset(columns)
    except (ValueError, TypeError, AttributeError):
        return None


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str | Path) -> str:
    """`text` as an SQL string literal (for statements that take no bound parameters: paths in
    ATTACH, SET and table functions)."""
    return "'" + str(text).replace("'", "''") + "'"


def snapshot_order(spec: ProductSpec) -> SortOrder:
    """The order a snapshot is written in: the scope column (a scoped reader's rows share row
    groups), then the spec's `cluster_by` (e.g. newest first: a scoped read of the newest rows
    stops after its page), then the key (a total order, as the gateway's pages are). Without a
    key, or with a personal one, then every other column: a reader pages such a product by file
    row number, which `write_snapshot` can then state depends on nothing else.

    Personal data never orders the file: a reader who sees a column masked pages by the key or,
    when the key is masked too, by file row number, so a PII key (or scope column) here would
    list that reader's rows in its raw values' order (`parse_cluster_by` refuses PII for the same
    reason)."""
    terms = [(spec.scope_column, "ASC"), *spec.cluster_by, (spec.key, "ASC")]
    personal = spec.pii_columns
    if not spec.key or spec.key in personal:
        terms += [(column.name, "ASC") for column in spec.columns]
    order: dict[str, str] = {}
    for column, direction in terms:
        if column and column not in order and column not in personal:
            order[column] = direction
    return tuple(order.items())


# Column types (DESCRIBE's names) that a Parquet file gives back with the same values and order;
# others are read back differently (an ENUM as VARCHAR in text order, a HUGEINT as DOUBLE).
SORTS_AS_READ = re.compile(
    r"VARCHAR|BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT)|FLOAT|DOUBLE|DECIMAL\(\d+,\d+\)|DATE"
    r"|TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?|UUID"
)


def _sorts_as_read(terms: Sequence[tuple[str, str]], types: dict[str, str]) -> list[tuple[str, str]]:
    """The longest start of `terms` the gateway, reading the file, sorts as the writer does: a
    file sorted by it and then by nothing is sorted by it and then its row number, so it is a
    true statement of the file's order (`file_order`)."""
    out: list[tuple[str, str]] = []
    for column, direction in terms:
        if not SORTS_AS_READ.fullmatch(types.get(column, "")):
            break
        out.append((column, direction))
    return out


def write_snapshot(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    dest_dir: Path,
    order_by: Sequence[tuple[str, str]] = (),
    unique: Sequence[str] = (),
) -> WrittenSnapshot:
    """Copy `relation` (a table or view name) into `dest_dir` as one immutable Parquet file.

    Written to a temp file in the same folder, fsynced, then renamed: a reader sees either no file
    or the whole file. Rows are written in `order_by` ((column, ASC|DESC), NULLs last, text in
    byte order whatever collation the relation's column has), which the file names in its
    metadata (`SORT_ORDER_KEY`, read by `file_order`) up to its first column whose type a reader
    of the file sorts otherwise (`SORTS_AS_READ`, e.g. an ENUM): sorted by the scope
    column first, a scoped reader's rows share row groups, and a read in the written order can
    stop after its page (`gateway.query.PageQuery.presorted`). The metadata also says whether
    no two rows tie on `order_by` (`ORDERED_BY_KEY`): then a row's place in the file depends on
    those columns only, and pages by file row number show nothing of any other column.

    `unique`: columns (a product's key) no two rows may share a value of; checked on the rows
    written and stated in the file (`UNIQUE_KEY`). Raises RepeatedValues, writing nothing, if one
    repeats (the gateway pages and resumes cursors by the key).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".tmp-{uuid.uuid4().hex}.parquet"
    terms = [(column, direction.upper()) for column, direction in order_by]
    if any(direction not in SORT_DIRECTIONS for _, direction in terms):
        raise ValueError(f"sort directions are ASC or DESC: {order_by!r}")
    types = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {relation})").fetchall()
    )
    # Text in byte order (`COLLATE C`), as the gateway sorts the file's plain VARCHAR: a mart
    # column can carry a collation (`x COLLATE NOCASE` in a model; DESCRIBE still says VARCHAR).
    values = [f"{quote_ident(c)}{' COLLATE C' if types.get(c) == 'VARCHAR' else ''}" for c, _ in terms]
    order = ", ".join(f"{v} {d} NULLS LAST" for v, (_, d) in zip(values, terms, strict=True))
    metadata = _order_metadata(con, relation, terms, types, values, unique)
    try:
        con.execute(
            f"COPY (SELECT * FROM {relation}{' ORDER BY ' + order if order else ''}) TO '{tmp}' "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_SIZE}, KV_METADATA {{{metadata}}})"
        )
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        checksum = file_checksum(tmp)
        final = dest_dir / f"{checksum[:24]}.parquet"
        os.replace(tmp, final)
        fsync_dir(dest_dir)
    finally:
        tmp.unlink(missing_ok=True)
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{final}')").fetchall()
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{final}')").fetchone()
    return WrittenSnapshot(
        path=final,
        checksum=checksum,
        row_count=int(rows[0]) if rows else 0,
        byte_size=final.stat().st_size,
        schema=tuple((str(r[0]), str(r[1])) for r in described),
    )


def _order_metadata(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    terms: Sequence[tuple[str, str]],
    types: dict[str, str],
    values: Sequence[str],
    unique: Sequence[str],
) -> str:
    """The file's KV_METADATA (COPY option text): its stated order, what its order depends on and
    its unique columns, checked on `relation` (RepeatedValues if a `unique` column repeats)."""
    for column in unique:
        if repeated := repeated_values(con, relation, column):
            raise RepeatedValues(f"{column!r} repeats {repeated} value(s): it is declared unique (the key)")
    stated = json.dumps([list(t) for t in _sorts_as_read(terms, types)])
    ordered_by = json.dumps({"columns": [c for c, _ in terms], "total": _no_ties(con, relation, values)})
    return ", ".join(
        f"{key}: '{value.replace(chr(39), chr(39) * 2)}'"
        for key, value in (
            (SORT_ORDER_KEY, stated),
            (ORDERED_BY_KEY, ordered_by),
            (UNIQUE_KEY, json.dumps(list(unique))),
        )
    )


def repeated_values(con: duckdb.DuckDBPyConnection, relation: str, column: str) -> int:
    """How many values of `column` stand on more than one row of `relation` (NULL counts as one
    value, as NULLs sort together): 0 when the column is a key."""
    rows = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {relation} GROUP BY {quote_ident(column)} HAVING count(*) > 1)"
    ).fetchone()
    return int(rows[0]) if rows else 0


def _no_ties(con: duckdb.DuckDBPyConnection, relation: str, values: Sequence[str]) -> bool:
    """True if no two rows of `relation` agree on every one of `values` (SQL expressions; NULLs
    agree with NULLs, as they sort together)."""
    if not values:
        rows = con.execute(f"SELECT count(*) <= 1 FROM {relation}").fetchone()
    else:
        group = ", ".join(values)
        rows = con.execute(
            f"SELECT NOT EXISTS (SELECT 1 FROM {relation} GROUP BY {group} HAVING count(*) > 1)"
        ).fetchone()
    return bool(rows and rows[0])
