"""The access review: every right each subject holds, where it comes from, when it was last used.

Rights are the engine's allowed decisions for every user in the directory, every product and every
action, each with the rule that gives it: a policy line (`policy.csv:12`), a runtime grant
(`access request #7`, with approver and expiry) or a built-in classification rule; and the rights
over the mesh itself (`SYSTEM_ACTIONS`, e.g. `produce_lineage`), once per object a policy line of
that action names (a namespace, or `*`). Last use comes from the access log (allowed records, and
an owner's reject or revoke: a use of `grant` as much as an approval; a system right's use is the
subject's newest allowed record of its action, whatever the namespace). A right given by a policy
line or a grant that was not used in the last `days` days is flagged unused: those are the ones a
reviewer can take away (built-in rights follow from a product's classification and are listed,
never flagged).

One implementation for every surface: `civicmesh audit report` only prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from meshcore.accesslog import AccessLog, utc_timestamp
from meshcore.products import ProductSpec
from policies.decision import ACTIONS, SYSTEM_ACTIONS
from policies.engine import PolicyEngine
from policies.rules import ROW_ACTIONS

BUILTIN_SOURCE = "policies/rules.py"
# What counts as using a right: an allowed access-log record by the subject on the product with
# one of these actions (read_pii: a read or export that returned a PII column unmasked).
USES: dict[str, tuple[str, ...]] = {
    "discover": ("discover", "read", "export", "lineage", "audit"),
    "read": ("read",),
    "export": ("export",),
    "lineage": ("lineage",),
    "audit": ("audit",),
    "grant": ("approve", "reject", "revoke"),
}
ANY_DECISION = ("reject", "revoke")  # logged as deny / none, yet the owner used the grant right
# Rights over the mesh itself: the action their use is logged as (no product on those records).
SYSTEM_USES: dict[str, str] = {"produce_lineage": "lineage_ingest"}


@dataclass(frozen=True)
class Right:
    """One right of one subject on one product, as the engine decides it now."""

    subject: str
    product: str
    action: str
    rule: str | None
    source: str | None  # "policy.csv:12", "access request #7" or "policies/rules.py"
    masked: tuple[str, ...] = ()
    row_filter: str | None = None
    granted_by: str | None = None  # grants: the approving owner
    expires_at: str | None = None  # grants: when the right ends by itself
    last_used: str | None = None  # newest allowed use in the access log (ISO-8601 UTC), if any
    unused: bool = False  # from a line or a grant, and not used in the review period

    @property
    def removable(self) -> bool:
        return self.source is not None and self.source != BUILTIN_SOURCE


@dataclass
class Review:
    generated_at: str
    since: str  # start of the review period
    days: int
    policy_version: str
    rights: list[Right] = field(default_factory=list)

    def by_subject(self) -> dict[str, list[Right]]:
        out: dict[str, list[Right]] = {}
        for right in self.rights:
            out.setdefault(right.subject, []).append(right)
        return out

    def unused(self) -> list[Right]:
        return [r for r in self.rights if r.unused]

    def as_dict(self) -> dict[str, object]:
        return {
            "generated_at": self.generated_at,
            "since": self.since,
            "days": self.days,
            "policy_version": self.policy_version,
            "rights_by_subject": {s: [asdict(r) for r in rights] for s, rights in self.by_subject().items()},
            "unused": [asdict(r) for r in self.unused()],
        }


def last_uses(log: AccessLog, products: Iterable[ProductSpec]) -> dict[tuple[str, str | None, str], str]:
    """(subject, product, right) -> newest use, over the whole log (product None: a system right)."""
    by_action = log.last_allowed(also=ANY_DECISION)
    uses: dict[tuple[str, str | None, str], str] = {}
    for (subject, product, logged), ts in by_action.items():
        for right, actions in USES.items():
            if product is not None and logged in actions and ts > uses.get((subject, product, right), ""):
                uses[(subject, product, right)] = ts
        for right, action in SYSTEM_USES.items():
            if logged == action and ts > uses.get((subject, None, right), ""):
                uses[(subject, None, right)] = ts
    pii = {p.name: set(p.pii_columns) for p in products}
    for row in log.unmasked_reads():
        returned = set(row["columns_returned"] or ()) - set(row["columns_masked"] or {})
        key = (row["subject"], row["product"], "read_pii")
        if returned & pii.get(row["product"], set()) and row["ts"] > uses.get(key, ""):
            uses[key] = row["ts"]
    return uses


def access_review(
    engine: PolicyEngine, products: Iterable[ProductSpec], log: AccessLog, *, now: datetime, days: int
) -> Review:
    """Every allowed (user, product, action) with its source and last use; see the module doc."""
    products = sorted(products, key=lambda p: p.name)
    since = utc_timestamp(now - timedelta(days=days))
    uses = last_uses(log, products)
    review = Review(utc_timestamp(now), since, days, engine.version)
    for user in sorted(engine.users(), key=lambda u: u.name):
        for product in products:
            for action in ACTIONS:
                decision = engine.decide(user.name, product, action)
                if not decision.allowed:
                    continue
                grant = engine.grant_for(decision)
                used = uses.get((user.name, product.name, action))
                right = Right(
                    subject=user.name,
                    product=product.name,
                    action=action,
                    rule=decision.rule,
                    source=decision.source,
                    masked=tuple(sorted(decision.masks)) if action in ROW_ACTIONS else (),
                    row_filter=decision.row_filter.describe() if decision.row_filter else None,
                    granted_by=grant.decided_by if grant else None,
                    expires_at=utc_timestamp(grant.expires_at) if grant and grant.expires_at else None,
                    last_used=used,
                )
                unused = right.removable and (used is None or used < since)
                review.rights.append(replace(right, unused=True) if unused else right)
        review.rights += system_rights(engine, user.name, uses, since)
    return review


def system_rights(
    engine: PolicyEngine, subject: str, uses: dict[tuple[str, str | None, str], str], since: str
) -> list[Right]:
    """`subject`'s rights over the mesh itself, one per object a policy line of the action names."""
    rights = []
    for action in SYSTEM_ACTIONS:
        objects = sorted({r.fields[2] for r in engine.rules() if r.ptype == "p" and r.fields[3] == action})
        for obj in objects:
            decision = engine.decide_system(subject, action, obj)
            if decision.allowed:
                used = uses.get((subject, None, action))
                right = Right(subject, obj, action, decision.rule, decision.source, last_used=used)
                rights.append(replace(right, unused=right.removable and (used is None or used < since)))
    return rights
