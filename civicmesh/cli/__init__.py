"""The `civicmesh` command: one module per command group, each registering its own subcommands.

The CLI is the composition root: it alone may import every room, and it imports each lazily so
that `civicmesh token` does not pay for loading Dagster.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

# Each module defines `register(subparsers)`; its handlers return an exit code.
COMMAND_MODULES = (
    "civicmesh.cli.generate",
    "civicmesh.cli.build",
    "civicmesh.cli.snapshots",
    "civicmesh.cli.serve",
    "civicmesh.cli.policy",
    "civicmesh.cli.access",
    "civicmesh.cli.audit",
    "civicmesh.cli.lineage",
    "civicmesh.cli.backup",
    "civicmesh.cli.product",
)


class CommandError(Exception):
    """A user-facing failure: printed without a traceback, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="civicmesh",
        description="A governed data mesh: build, publish, serve and audit department data products.",
        epilog="Run `civicmesh COMMAND --help` for a command's options. Exit code 0 only on success.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command group not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Building the parser imports most of the code base: the cyclic collector would walk those
    # long-lived modules and classes again and again for nothing (~0.1 s of a start).
    gc.disable()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    finally:
        gc.enable()
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"civicmesh {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
