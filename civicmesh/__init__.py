"""civicmesh, the application layer: the CLI, the demo data generator, backup and audit tooling.

It sits on top of every room and may import all of them; nothing below imports it (the shared core
is `meshcore`, checked by import-linter: `make test`).
"""
