"""Faults injected into a real metadata store (SQLite or PostgreSQL), for reliability tests.

`raw_sql` writes behind the application's back (an attacker, or an operator); `refuse_inserts` makes
every insert into a table fail (a trigger) until `allow_inserts`; `unwritable` makes a SQLite store's
files unwritable for real, open file descriptors included: the immutable attribute (`chattr +i`),
which root cannot write through either (CI runs as root; `chmod` would not stop root, nor writes
through descriptors opened before it).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url


def raw_sql(url: str, *statements: str) -> None:
    """Run `statements` in one transaction on a private engine (bypassing every civicmesh class)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def refuse_inserts(url: str, table: str = "access_log") -> None:
    if make_url(url).get_backend_name() == "sqlite":
        raw_sql(url, f"CREATE TRIGGER deny BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'no'); END")
    else:
        raw_sql(
            url,
            "CREATE OR REPLACE FUNCTION deny() RETURNS trigger LANGUAGE plpgsql "
            "AS $$BEGIN RAISE EXCEPTION 'no'; END$$",
            f"CREATE TRIGGER deny BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION deny()",
        )


def allow_inserts(url: str, table: str = "access_log") -> None:
    sqlite = make_url(url).get_backend_name() == "sqlite"
    raw_sql(url, "DROP TRIGGER deny" if sqlite else f"DROP TRIGGER deny ON {table}")


def can_make_unwritable(path: Path) -> bool:
    """Whether `unwritable` can really stop writes here (root on a file system with `chattr +i`)."""
    if os.geteuid() != 0:
        return False
    probe = path / ".chattr-probe"
    probe.touch()
    try:
        ok = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode == 0
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
        return ok
    finally:
        probe.unlink(missing_ok=True)


def _set_immutable(paths: list[Path], on: bool) -> None:
    flag = "+i" if on else "-i"
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextlib.contextmanager
def unwritable(paths: list[Path]) -> Iterator[None]:
    """Make `paths` (files and folders that exist) unwritable while the block runs; restored after,
    whatever happens."""
    existing = [p for p in paths if p.exists()]
    _set_immutable(existing, True)
    try:
        yield
    finally:
        _set_immutable(existing, False)


def sqlite_files(db: Path, with_shm: bool) -> list[Path]:
    """The database, its journal/WAL and its folder. The WAL index (-shm) is memory-mapped: making it
    immutable under a running process is a SIGBUS (see meshcore/store.py), so only on request."""
    suffixes = ["-wal", "-journal", *(["-shm"] if with_shm else [])]
    return [db, *(db.with_name(db.name + s) for s in suffixes), db.parent]
