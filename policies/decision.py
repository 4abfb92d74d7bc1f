"""The shape of an access decision. Every surface consumes these types; only the engine makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Actions on one data product (the object of a decision is `<department>.<product>`).
ACTIONS = ("discover", "read", "read_pii", "export", "lineage", "audit", "grant")
# Rights over the mesh itself, granted only in the `global` domain; the object is named per action:
# `produce_lineage` = write OpenLineage events from outside (POST /api/v1/lineage) under a job namespace.
SYSTEM_ACTIONS = ("produce_lineage",)
POLICY_ACTIONS = (*ACTIONS, *SYSTEM_ACTIONS)  # what a policy line may grant


@dataclass(frozen=True)
class RowFilter:
    """Rows are limited to `column IN values`; rendered to SQL only with bound parameters."""

    column: str
    values: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.column} IN ({', '.join(self.values)})"

    def as_dict(self) -> dict[str, Any]:
        """`{"column", "values"}`: the shape of the access log's `row_filter`, the lineage read
        facet's `rowFilter` and GraphQL's `extensions.governance`."""
        return {"column": self.column, "values": list(self.values)}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    subject: str
    product: str  # the object: a product name, or for a SYSTEM_ACTIONS decision its namespace
    action: str
    rule: str | None  # the policy line (or built-in rule id) that decided; None for default deny
    reason: str  # one human sentence, safe to show the caller
    policy_version: str
    masks: dict[str, str] = field(
        default_factory=dict
    )  # column -> mask kind (redact|hash|partial|generalize)
    row_filter: RowFilter | None = None
    source: str | None = None  # where the deciding rule lives: "policy.csv:12", "access request #7", ...
