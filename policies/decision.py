"""The shape of an access decision. Every surface consumes these types; only the engine makes them."""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIONS = ("discover", "read", "read_pii", "export", "lineage", "audit", "grant")


@dataclass(frozen=True)
class RowFilter:
    """Rows are limited to `column IN values`; rendered to SQL only with bound parameters."""

    column: str
    values: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.column} IN ({', '.join(self.values)})"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    subject: str
    product: str
    action: str
    rule: str | None  # the policy line (or built-in rule id) that decided; None for default deny
    reason: str  # one human sentence, safe to show the caller
    policy_version: str
    masks: dict[str, str] = field(
        default_factory=dict
    )  # column -> mask kind (redact|hash|partial|generalize)
    row_filter: RowFilter | None = None
    source: str | None = None  # where the deciding rule lives: "policy.csv:12", "access request #7", ...
