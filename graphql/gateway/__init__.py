"""GraphQL gateway: Starlette + Strawberry over published snapshots."""

import sys

# Strawberry's package imports its pydantic integration (pydantic, pydantic.v1: ~0.1 s of every
# start) whenever pydantic is installed, and Dagster installs it; the gateway never uses it.
# `strawberry.experimental` skips the integration when its import raises ModuleNotFoundError, which
# a None entry in sys.modules makes it do (https://docs.python.org/3/reference/import.html#the-module-cache).
# Set before any gateway module imports Strawberry; a process that imported Strawberry first keeps it.
if "strawberry" not in sys.modules:
    sys.modules.setdefault("strawberry.experimental.pydantic", None)  # type: ignore[arg-type]
