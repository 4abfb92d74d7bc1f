"""Immutable Parquet snapshots, written atomically and named by their content, and the check that
a file still holds what was published (its SHA-256, stored in the catalog at publish)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

ROW_GROUP_SIZE = 32_768  # small enough that a district/category filter prunes most row groups


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


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_snapshot(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    dest_dir: Path,
    order_by: tuple[str, ...] = (),
) -> WrittenSnapshot:
    """Copy `relation` (a table or view name) into `dest_dir` as one immutable Parquet file.

    Written to a temp file in the same folder, fsynced, then renamed: a reader sees either no file
    or the whole file. Sorting by the scope and most-filtered columns lets row groups be pruned.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".tmp-{uuid.uuid4().hex}.parquet"
    order = f" ORDER BY {', '.join(quote_ident(c) for c in order_by)}" if order_by else ""
    try:
        con.execute(
            f"COPY (SELECT * FROM {relation}{order}) TO '{tmp}' "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_SIZE})"
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
