"""`civicmesh audit report`: the access review printed, with what the log says happened.

The rights part (every right of every subject, its source and last use, the unused ones) is
computed by `policies/review.py` and handed in as its plain `as_dict()`, so this module stays core;
denials and PII reads come from one pass over the log of the review period.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meshcore.accesslog import AccessLog, decode_row, utc_timestamp


@dataclass
class Report:
    review: dict[str, Any]  # policies.review.Review.as_dict()
    denials: dict[str, dict[str, int]] = field(default_factory=dict)  # product -> subject -> count
    pii_reads: dict[str, dict[str, Any]] = field(default_factory=dict)  # subject -> product -> info

    def as_dict(self) -> dict[str, Any]:
        return {**self.review, "denials_by_product": self.denials, "pii_reads_by_subject": self.pii_reads}


def _window_rows(log: AccessLog, since: datetime) -> Iterable[dict[str, Any]]:
    stamp = utc_timestamp(since)
    for row in log.rows():
        if row["ts"] >= stamp:
            yield decode_row(row)


def build_report(
    log: AccessLog, *, since: datetime, review: dict[str, Any], pii_columns: Mapping[str, Mapping[str, str]]
) -> Report:
    """One pass over the log since `since`; `pii_columns` is product -> {column: mask kind}."""
    report = Report(review)
    denials: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pii: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in _window_rows(log, since):
        subject, product, action = row["subject"], row["product"], row["action"]
        if row["decision"] == "deny" and product:
            denials[product][subject or "(unauthenticated)"] += 1
        if row["decision"] != "allow" or not product or not subject or action not in ("read", "export"):
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
    report.denials = {p: dict(sorted(s.items())) for p, s in sorted(denials.items())}
    report.pii_reads = {s: dict(sorted(p.items())) for s, p in sorted(pii.items())}
    return report


def _right(r: dict[str, Any]) -> str:
    extra = []
    if r["masked"]:
        extra.append("masked: " + ",".join(r["masked"]))
    if r["row_filter"]:
        extra.append(r["row_filter"])
    if r["granted_by"]:
        extra.append(f"approved by {r['granted_by']}, until {r['expires_at']}")
    used = f"last used {r['last_used']}" if r["last_used"] else "never used"
    flag = "UNUSED " if r["unused"] else "       "
    return f"    {flag}{r['action']:<9} {r['product']:<36} [{r['source'] or '?'}] {used}" + (
        f" ({'; '.join(extra)})" if extra else ""
    )


def _review_lines(review: dict[str, Any]) -> list[str]:
    lines = ["rights by subject (source: the policy line, grant or built-in rule that gives each)"]
    for subject, rights in review["rights_by_subject"].items():
        lines.append(f"  {subject}")
        lines += [_right(r) for r in rights]
    if not review["rights_by_subject"]:
        lines.append("  (no products)")
    lines += ["", f"rights from policy lines and grants unused in the last {review['days']} days"]
    lines += [
        f"  {r['subject']:<10} {r['action']:<9} {r['product']:<36} [{r['source']}] "
        + (f"last used {r['last_used']}" if r["last_used"] else "never used")
        for r in review["unused"]
    ] or ["  (none)"]
    return lines


def render_text(report: Report) -> str:
    review = report.review
    lines = [
        f"access review  {review['generated_at']}  (last {review['days']} days, since {review['since']})",
        f"policy version {review['policy_version'] or '?'}",
        "",
        *_review_lines(review),
    ]
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
