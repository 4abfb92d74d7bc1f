"""Explanations for people: why a decision came out as it did, what would change it, who can, and
what a policy change does to whom (impact analysis before it lands)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from meshcore.products import ProductSpec
from policies.decision import ACTIONS, Decision
from policies.engine import PolicyEngine
from policies.grants import REQUESTABLE_ACTIONS
from policies.names import GLOBAL_DOMAIN


def owners_of(engine: PolicyEngine, department: str) -> list[str]:
    owning = {name for name, role in engine.directory.roles.items() if role.owns}
    return sorted(
        u.name
        for u in engine.users()
        if any(r in owning and d == department for r, d in engine.roles(u.name))
    )


def what_would_change(engine: PolicyEngine, decision: Decision, product: ProductSpec) -> list[str]:
    """Concrete next steps: the grant or role that would turn this decision around."""
    hints: list[str] = []
    approvers = ", ".join(owners_of(engine, product.department)) or f"(no owner of {product.department} yet)"
    if engine.user(decision.subject) is None:
        return [f"add {decision.subject!r} to users.yaml; unknown subjects are always denied"]
    if not decision.allowed:
        if decision.action in REQUESTABLE_ACTIONS:
            hints.append(
                f"an approved access request would allow it: civicmesh access request {product.name} "
                f"--as {decision.subject} --action {decision.action} --purpose '...' --days 30 "
                f"(approvers: {approvers})"
            )
        else:
            hints.append(
                f"{decision.action} is a role right: a role in {product.department} that holds it "
                f"(policy.csv, e.g. `g, {decision.subject}, owner, {product.department}`)"
            )
        return hints
    if decision.masks:
        hints.append(
            f"read_pii on {product.name} would unmask {', '.join(sorted(decision.masks))}: "
            f"civicmesh access request {product.name} --as {decision.subject} --action read_pii "
            f"--purpose '...' (approvers: {approvers})"
        )
    if decision.row_filter is not None:
        hints.append(
            f"rows are limited by {decision.subject}'s attributes in users.yaml; "
            f"only owners of {product.department} are unscoped"
        )
    grant = engine.grant_for(decision)
    if grant is not None:
        hints.append(f"this right ends when the grant expires ({grant.expires_at:%Y-%m-%d %H:%M} UTC)")
    return hints


def explain(engine: PolicyEngine, subject: str, product: ProductSpec, action: str) -> list[str]:
    d = engine.decide(subject, product, action)
    lines = [
        f"{'ALLOW' if d.allowed else 'DENY'}  {d.subject} {d.action} {d.product}",
        f"  reason:  {d.reason}",
        f"  rule:    {d.rule or '(none: default deny)'}" + (f"  [{d.source}]" if d.source else ""),
    ]
    if d.allowed and d.action in ("read", "export"):
        masks = ", ".join(f"{c}={k}" for c, k in sorted(d.masks.items())) or "(none)"
        lines.append(f"  masks:   {masks}")
        lines.append(f"  rows:    {d.row_filter.describe() if d.row_filter else '(all)'}")
    roles = ", ".join(f"{r}@{dom}" for r, dom in engine.roles(subject)) or "(none)"
    lines.append(f"  roles:   {roles}")
    lines.append(f"  policy:  {d.policy_version}")
    lines += [f"  change:  {hint}" for hint in what_would_change(engine, d, product)]
    return lines


def who_can(engine: PolicyEngine, product: ProductSpec, action: str) -> list[Decision]:
    return [d for u in engine.users() if (d := engine.decide(u.name, product, action)).allowed]


@dataclass(frozen=True)
class Change:
    kind: str  # gain | lose | change
    subject: str
    product: str
    action: str
    before: Decision
    after: Decision

    def describe(self) -> str:
        sign = {"gain": "+", "lose": "-", "change": "~"}[self.kind]
        text = f"{sign} {self.subject:<10} {self.action:<9} {self.product}"
        if self.kind == "gain":
            return f"{text}  ({self.after.rule})"
        if self.kind == "lose":
            return f"{text}  (was: {self.before.rule})"
        details = []
        if self.before.masks != self.after.masks:
            details.append(f"masks {sorted(self.before.masks)} -> {sorted(self.after.masks)}")
        if self.before.row_filter != self.after.row_filter:
            rows = [
                f.describe() if f else "all rows" for f in (self.before.row_filter, self.after.row_filter)
            ]
            details.append(f"rows {rows[0]} -> {rows[1]}")
        return f"{text}  {'; '.join(details)}"


def _compare(a: Decision, b: Decision) -> str | None:
    """gain | lose | change (masks or rows), or None when `b` gives what `a` gave."""
    if a.allowed != b.allowed:
        return "gain" if b.allowed else "lose"
    if a.allowed and (a.masks != b.masks or a.row_filter != b.row_filter):
        return "change"
    return None


def diff(old: PolicyEngine, new: PolicyEngine, products: Iterable[ProductSpec]) -> list[Change]:
    """Which users gain or lose which rights (or see different masks/rows) between two policies."""
    changes: list[Change] = []
    subjects = sorted({u.name for u in old.users()} | {u.name for u in new.users()})
    for product in sorted(products, key=lambda p: p.name):
        if product.department == GLOBAL_DOMAIN:
            continue
        for subject in subjects:
            for action in ACTIONS:
                a, b = old.decide(subject, product, action), new.decide(subject, product, action)
                if kind := _compare(a, b):
                    changes.append(Change(kind, subject, product.name, action, a, b))
    return changes


def product_changes(engine: PolicyEngine, before: ProductSpec | None, after: ProductSpec) -> list[Change]:
    """Who gains or loses which rights on a product when its spec changes from `before` (None: not
    published yet, so nobody holds anything) to `after` under one policy: the same comparison as
    `diff`, for a change of classification, columns, masks or scope instead of a policy change."""
    changes: list[Change] = []
    for user in sorted(engine.users(), key=lambda u: u.name):
        for action in ACTIONS:
            b = engine.decide(user.name, after, action)
            a = engine.decide(user.name, before, action) if before is not None else replace(b, allowed=False)
            if kind := _compare(a, b):
                changes.append(Change(kind, user.name, after.name, action, a, b))
    return changes
