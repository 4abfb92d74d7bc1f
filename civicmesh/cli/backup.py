"""`civicmesh backup DEST` and `civicmesh restore SRC`: a home copied consistently while it serves."""

from __future__ import annotations

import argparse
from pathlib import Path

from civicmesh.cli import CommandError
from meshcore.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    backup = subparsers.add_parser(
        "backup", help="copy the metadata store and snapshots of CIVICMESH_HOME to DEST, while serving"
    )
    backup.add_argument("dest", type=Path, help="a new (or empty) folder outside the home")
    backup.add_argument(
        "--without-store",
        action="store_true",
        help="copy the files only (a PostgreSQL store is backed up with pg_dump)",
    )
    backup.set_defaults(handler=run_backup)

    restore = subparsers.add_parser("restore", help="restore a backup as CIVICMESH_HOME (new or empty)")
    restore.add_argument("source", type=Path, help="a folder written by `civicmesh backup`")
    restore.set_defaults(handler=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from civicmesh.backup import BackupError, backup

    settings = Settings.from_env()
    if not settings.home.is_dir():
        raise CommandError(f"no home at {settings.home} (set CIVICMESH_HOME)")
    try:
        summary = backup(settings, args.dest, without_store=args.without_store)
    except BackupError as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"backed up {settings.home} to {summary.path}: {summary.snapshots} snapshots verified, "
        f"{summary.files} files, store {summary.store}"
    )
    return 0


def run_restore(args: argparse.Namespace) -> int:
    from civicmesh.backup import BackupError, restore

    settings = Settings.from_env()
    try:
        summary = restore(settings, args.source)
    except BackupError as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"restored {args.source} to {summary.path}: "
        f"{summary.snapshots} snapshots verified, {summary.files} files"
    )
    if summary.store != "sqlite":
        print("the backup holds no metadata store: restore it with pg_restore (README, Backup and restore)")
    return 0
