"""Backup and restore of a home: a consistent copy of the metadata store and the snapshots it names.

A backup is a folder laid out like a home (so it can be restored to any path), plus
`civicmesh-backup.json`. It is taken while the gateway serves and builds run:

- the SQLite store is copied with SQLite's online backup API (one consistent state of every table:
  catalog, grants, access log and its checkpoints, lineage outbox);
- then every snapshot that copy names is copied and its SHA-256 checked against the catalog's
  `checksum`. Snapshots are immutable and written before the catalog points at them, so copying
  the files after the store gives a complete pair; a file removed by `snapshots gc` in between
  fails the backup (nothing is half-written: the backup folder appears only when complete);
- secrets (the audit key verifies checkpoints; the mask key keeps pseudonyms stable), landing files,
  the lineage file transport and Dagster's instance (its SQLite files also by online backup);
- the audit folder: the exported public key and, when it lives in the home (the default), the
  checkpoint sink, cut after the last checkpoint the store copy holds (a sink append always comes
  before the store's copy of it, so the copy is the sink as it was when the store was copied). An
  external sink is the authority and stays where it is: a restored store is older than it, and
  `audit verify` says so.

Left out, because a build recreates them: the DuckDB warehouse, dbt's target and logs, build logs.
A PostgreSQL store is dumped with `pg_dump` instead (README, "Backup and restore"); `without_store`
then copies the files alone. Restore verifies every snapshot against the restored catalog before
the home appears, and refuses to overwrite a home that holds data.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from meshcore.catalog import Catalog
from meshcore.settings import Settings
from meshcore.snapshots import file_checksum, fsync_dir

MANIFEST = "civicmesh-backup.json"
FORMAT = 1
STORE_FILE = "metadata.db"
# Folders of a home that a backup holds besides the store and the snapshots.
COPIED_FOLDERS = ("secrets", "landing", "lineage", "dagster")
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """The backup or restore cannot be done completely; nothing was written at the destination."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    snapshots: int
    files: int
    store: str  # "sqlite" | "external"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for any other store (or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def _copy_sqlite(source: Path, dest: Path) -> None:
    """SQLite's online backup API: a consistent copy while other processes write."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def _copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix == ".db":
        _copy_sqlite(source, dest)
    elif source.suffix == ".jsonl":  # appended to while we copy: keep whole lines only
        data = source.read_bytes()
        dest.write_bytes(data[: data.rfind(b"\n") + 1])
    else:
        shutil.copy2(source, dest)
    shutil.copymode(source, dest)  # secrets stay 0600
    with dest.open("rb") as handle:
        os.fsync(handle.fileno())


def _copy_folder(source: Path, dest: Path) -> int:
    """Copy a home folder file by file (SQLite files by online backup, side files skipped)."""
    count = 0
    for path in sorted(source.rglob("*")) if source.is_dir() else ():
        if path.is_file() and not path.name.endswith(SQLITE_SIDE_FILES):
            _copy_file(path, dest / path.relative_to(source))
            count += 1
    for folder in [source, *(p for p in source.rglob("*") if p.is_dir())] if source.is_dir() else ():
        target = dest / folder.relative_to(source)
        if target.is_dir():
            shutil.copymode(folder, target)  # the secrets folder stays 0700
    return count


@contextmanager
def _catalog_of(store: Path, home: Path) -> Iterator[Catalog]:
    """A catalog over the SQLite file `store` whose paths resolve against `home` (not pooled)."""
    engine = create_engine(f"sqlite:///{store}")
    try:
        yield Catalog(engine, home).ensure_schema()
    finally:
        engine.dispose()


def _snapshot_files(catalog: Catalog) -> dict[str, str]:
    """Stored (home-relative) path -> checksum of every snapshot the catalog still names."""
    files = {}
    for entry in catalog.entries(include_retired=True):  # their history too
        for snapshot in catalog.snapshots(entry.spec.name):
            stored = catalog.stored_path(snapshot.path)
            if Path(stored).is_absolute():
                raise BackupError(f"snapshot {snapshot.id} lies outside the home: {stored}")
            files[stored] = snapshot.checksum
    return files


def _verify(files: dict[str, str], home: Path) -> None:
    bad = [
        p for p, checksum in files.items() if not (home / p).is_file() or file_checksum(home / p) != checksum
    ]
    if bad:
        raise BackupError(
            f"{len(bad)} snapshot file(s) missing or not matching the catalog: {', '.join(bad[:5])}"
        )


def _staging(dest: Path, kind: str) -> Path:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not empty")
    staging = dest.parent / f".{dest.name}.{kind}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, dest: Path) -> None:
    """Make the finished copy appear at `dest` in one rename."""
    if dest.is_dir():
        dest.rmdir()  # empty, checked by _staging
    os.replace(staging, dest)
    fsync_dir(dest.parent)


def backup(settings: Settings, dest: Path, without_store: bool = False) -> BackupSummary:
    """Copy the home of `settings` to `dest` (which must not exist, or be empty)."""
    dest = dest.expanduser().resolve()
    home = settings.home.resolve()
    if dest.is_relative_to(home):
        raise BackupError("the backup must go outside the home it copies")
    store = sqlite_path(settings.metadata_url)
    if store is None and not without_store:
        raise BackupError(
            "the metadata store is not SQLite: dump it with pg_dump first, then run "
            "`civicmesh backup --without-store DEST` for the files (see README, Backup and restore)"
        )
    staging = _staging(dest, "backup")
    try:
        files = _backup_contents(settings, store if not without_store else None, staging)
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "source_home": str(home),
            "store": "sqlite" if store and not without_store else "external",
            "snapshots": len(files),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        count = sum(1 for p in staging.rglob("*") if p.is_file())
        _publish(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupSummary(dest, len(files), count, str(manifest["store"]))


def _backup_contents(settings: Settings, store: Path | None, staging: Path) -> dict[str, str]:
    home = settings.home.resolve()
    if store is None:  # the store is backed up separately: take every snapshot file there is
        _copy_folder(settings.snapshots_dir, staging / settings.snapshots_dir.name)
        files: dict[str, str] = {}
    else:
        _copy_sqlite(store, staging / STORE_FILE)  # first the store, then the files it names
        with _catalog_of(staging / STORE_FILE, home) as catalog:
            files = _snapshot_files(catalog)
        for stored in files:
            _copy_file(home / stored, staging / stored)
        _verify(files, staging)
    for folder in COPIED_FOLDERS:
        _copy_folder(home / folder, staging / folder)
    _copy_audit(settings, staging, staging / STORE_FILE if store is not None else None)
    return files


def _copy_audit(settings: Settings, staging: Path, store_copy: Path | None) -> None:
    """The home's audit folder (see the module docstring): the sink in it cut to `store_copy`."""
    from meshcore.seals.sinks import FileSink, open_sink

    home, audit = settings.home.resolve(), settings.audit_dir.resolve()
    sink = open_sink(settings.audit_sink)
    sink_path = sink.path.resolve() if isinstance(sink, FileSink) else None
    for path in sorted(audit.rglob("*")) if audit.is_dir() else ():
        if path.is_file() and path.resolve() != sink_path:
            _copy_file(path, staging / path.relative_to(home))
    if sink_path is None or not sink_path.is_relative_to(home) or not sink_path.is_file():
        return
    last = _last_checkpoint(store_copy) if store_copy is not None else None
    entries = [e for e in sink.read() if last is None or _index(e.data) <= last]
    target = staging / sink_path.relative_to(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(e.raw + "\n" for e in entries))
    with target.open("rb") as handle:
        os.fsync(handle.fileno())


def _index(data: dict | None) -> int:
    """A sink entry's checkpoint index (0 for a malformed one: kept, for `audit verify` to report)."""
    index = (data or {}).get("index")
    return index if isinstance(index, int) else 0


def _last_checkpoint(store_copy: Path) -> int:
    """The index of the newest checkpoint in a copied SQLite store (0: none)."""
    con = sqlite3.connect(f"file:{store_copy}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT coalesce(max(idx), 0) FROM audit_checkpoints").fetchone()[0])
    except sqlite3.OperationalError:  # no checkpoint table: nothing was ever sealed
        return 0
    finally:
        con.close()


def restore(settings: Settings, source: Path) -> BackupSummary:
    """Restore the backup at `source` as the home of `settings` (new, or an empty folder)."""
    source = source.expanduser().resolve()
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} is not a civicmesh backup ({MANIFEST}: {exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r} (this version reads {FORMAT})")
    home = settings.home.resolve()
    store = sqlite_path(settings.metadata_url)
    if manifest["store"] == "sqlite" and store is None:
        raise BackupError("this backup holds a SQLite store, but CIVICMESH_METADATA_URL names another kind")
    if manifest["store"] == "sqlite" and store is not None and store != home / STORE_FILE and store.exists():
        raise BackupError(f"the metadata store {store} already exists: restore into a new store")
    staging = _staging(home, "restore")
    try:
        count = _copy_folder(source, staging)
        (staging / MANIFEST).unlink()
        files: dict[str, str] = {}
        if manifest["store"] == "sqlite":
            with _catalog_of(staging / STORE_FILE, staging) as catalog:
                files = _snapshot_files(catalog)
            _verify(files, staging)
            if store is not None and store != home / STORE_FILE:
                store.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staging / STORE_FILE, store)
        _publish(staging, home)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupSummary(home, len(files), count - 1, manifest["store"])
