"""Immutable Parquet snapshots, written atomically and named by their content."""

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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes: a snapshot's `checksum` in the catalog."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        checksum = sha256_file(tmp)
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
