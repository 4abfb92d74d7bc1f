"""The one Definitions of the civicmesh code location.

Load with `dagster dev -m orchestration.definitions` (or `make dagster`).
"""

from orchestration.assemble import build_definitions

defs = build_definitions()
