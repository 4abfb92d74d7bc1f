"""`civicmesh audit report`: the access review, assembled from the access log and plain data.

Who holds which rights comes from the policy engine and the grants from the grant store; the CLI
(the composition root) reads both and hands them in as plain values, so this module stays core.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from civicmesh.accesslog import AccessLog, decode_row, utc_timestamp

# What counts as using a grant: an allowed record of one of these log actions by the grantee.
USES = {
    "read": ("read", "export"),
    "read_pii": ("read", "export"),
    "export": ("export",),
    "discover": ("read", "export", "discover"),
    "lineage": ("lineage",),
}


@dataclass(frozen=True)
class Holding:
    """One subject's right on one product, as the engine decides it now."""

    product: str
    action: str
    subject: str
    rule: str | None
    source: str | None  # where the rule lives (a file line, or "access request #N")
    masked: tuple[str, ...] = ()
    row_filter: str | None = None


@dataclass(frozen=True)
class GrantInfo:
    id: int
    subject: str
    product: str
    action: str
    decided_by: str | None
    decided_at: datetime | None
    expires_at: datetime | None


@dataclass
class Report:
    generated_at: str
    since: str
    days: int
    policy_version: str | None
    rights: list[Holding] = field(default_factory=list)
    unused_grants: list[dict[str, Any]] = field(default_factory=list)
    denials: dict[str, dict[str, int]] = field(default_factory=dict)  # product -> subject -> count
    pii_reads: dict[str, dict[str, Any]] = field(default_factory=dict)  # subject -> product -> info

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "since": self.since,
            "days": self.days,
            "policy_version": self.policy_version,
            "rights": [asdict(h) for h in self.rights],
            "unused_grants": self.unused_grants,
            "denials_by_product": self.denials,
            "pii_reads_by_subject": self.pii_reads,
        }


def _window_rows(log: AccessLog, since: datetime) -> Iterable[dict[str, Any]]:
    stamp = utc_timestamp(since)
    for row in log.rows():
        if row["ts"] >= stamp:
            yield decode_row(row)


def build_report(
    log: AccessLog,
    *,
    now: datetime,
    since: datetime,
    days: int,
    holdings: Iterable[Holding],
    grants: Iterable[GrantInfo],
    pii_columns: Mapping[str, Mapping[str, str]],
    policy_version: str | None = None,
) -> Report:
    """One pass over the log since `since`; `pii_columns` is product -> {column: mask kind}."""
    report = Report(utc_timestamp(now), utc_timestamp(since), days, policy_version)
    report.rights = sorted(holdings, key=lambda h: (h.product, h.action, h.subject))
    grants = list(grants)
    last_use: dict[tuple[str, str, str], str] = {}
    wanted = {(g.subject, g.product) for g in grants}
    denials: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pii: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in _window_rows(log, since):
        subject, product, action = row["subject"], row["product"], row["action"]
        if row["decision"] == "deny" and product:
            denials[product][subject or "(unauthenticated)"] += 1
        if row["decision"] != "allow" or not product or not subject:
            continue
        if (subject, product) in wanted:
            key = (subject, product, action)
            last_use[key] = max(last_use.get(key, ""), row["ts"])
        if action not in ("read", "export"):
            continue
        masked = set(row["columns_masked"] or {})
        seen = sorted(
            c for c in row["columns_returned"] or () if c in pii_columns.get(product, {}) and c not in masked
        )
        if seen:
            item = pii[subject].setdefault(
                product, {"reads": 0, "rows": 0, "columns": [], "first": row["ts"], "last": row["ts"]}
            )
            item["reads"] += 1
            item["rows"] += row["rows"] or 0
            item["columns"] = sorted(set(item["columns"]) | set(seen))
            item["last"] = row["ts"]
    for g in grants:
        approved = utc_timestamp(g.decided_at) if g.decided_at else ""
        uses = [
            ts
            for action in USES.get(g.action, (g.action,))
            if (ts := last_use.get((g.subject, g.product, action))) and ts >= approved
        ]
        if uses:
            continue
        report.unused_grants.append(
            {
                "request_id": g.id,
                "subject": g.subject,
                "product": g.product,
                "action": g.action,
                "approved_by": g.decided_by,
                "approved_at": approved or None,
                "expires_at": utc_timestamp(g.expires_at) if g.expires_at else None,
                "idle_days": round((now - g.decided_at).total_seconds() / 86400, 1) if g.decided_at else None,
            }
        )
    report.denials = {p: dict(sorted(s.items())) for p, s in sorted(denials.items())}
    report.pii_reads = {s: dict(sorted(p.items())) for s, p in sorted(pii.items())}
    return report


def render_text(report: Report) -> str:
    lines = [
        f"access review  {report.generated_at}  (last {report.days} days, since {report.since})",
        f"policy version {report.policy_version or '?'}",
        "",
        "rights held",
    ]
    by_product: dict[str, list[Holding]] = defaultdict(list)
    for h in report.rights:
        by_product[h.product].append(h)
    for product, holdings in by_product.items():
        lines.append(f"  {product}")
        actions: dict[str, list[str]] = defaultdict(list)
        for h in holdings:
            extra = []
            if h.masked:
                extra.append("masked: " + ",".join(h.masked))
            if h.row_filter:
                extra.append(h.row_filter)
            if h.source and h.source.startswith("access request"):
                extra.append(h.source)
            actions[h.action].append(h.subject + (f" ({'; '.join(extra)})" if extra else ""))
        for action, subjects in actions.items():
            lines.append(f"    {action:<9} {', '.join(subjects)}")
    if not by_product:
        lines.append("  (no products)")
    lines += ["", f"grants unused in the last {report.days} days"]
    for g in report.unused_grants:
        lines.append(
            f"  #{g['request_id']:<4} {g['subject']:<10} {g['action']:<9} {g['product']}  "
            f"approved by {g['approved_by']} {g['approved_at'] or '?'}, expires {g['expires_at'] or '?'}"
        )
    if not report.unused_grants:
        lines.append("  (none)")
    lines += ["", "denials by product"]
    for product, subjects in report.denials.items():
        total = sum(subjects.values())
        who = ", ".join(f"{s} {n}" for s, n in subjects.items())
        lines.append(f"  {product:<40} {total:>6}  ({who})")
    if not report.denials:
        lines.append("  (none)")
    lines += ["", "PII reads by subject (unmasked PII columns returned)"]
    for subject, products in report.pii_reads.items():
        lines.append(f"  {subject}")
        for product, item in products.items():
            lines.append(
                f"    {product:<38} {item['reads']:>5} reads {item['rows']:>8} rows  "
                f"columns: {', '.join(item['columns'])}  last {item['last']}"
            )
    if not report.pii_reads:
        lines.append("  (none)")
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True, default=str)
