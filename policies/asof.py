"""Reading the past (`asOf`) under today's rights and the rights in force then, whichever is stricter.

A snapshot read as of T is decided twice: by today's policy and by the policy and grants in force
at T (`policies/history.py`). `stricter(now, then)` keeps the stricter of the two, never the looser:

- allowed only if both allow (a read denied then stays denied, even if today's policy allows it);
- a column masked by either stays masked, with the stronger kind
  (redact > hash > partial > generalize; a kind unknown here counts as redact);
- rows limited by both filters (the values both allow; a filter on another column than today's
  cannot be expressed in one `RowFilter`, so the read is denied rather than widened).

`applied` says in words what came from T that today's decision alone would not have done; with
nothing recorded at T (no gateway had loaded a policy yet) today's decision stands, and says so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from meshcore.accesslog import AccessLog, utc_timestamp
from meshcore.products import ProductSpec
from policies.decision import Decision, RowFilter
from policies.history import History, NotRecorded

MASK_STRENGTH = {"generalize": 0, "partial": 1, "hash": 2, "redact": 3}


def _strength(kind: str) -> int:
    return MASK_STRENGTH.get(kind, max(MASK_STRENGTH.values()))


def _stronger(a: str, b: str) -> str:
    stronger = a if _strength(a) >= _strength(b) else b
    return stronger if stronger in MASK_STRENGTH else "redact"


def _rows(now: RowFilter | None, then: RowFilter | None) -> tuple[RowFilter | None, bool]:
    """(the combined filter, whether it is expressible)."""
    if then is None or now == then:
        return now, True
    if now is None:
        return then, True
    if now.column != then.column:
        return None, False
    return RowFilter(now.column, tuple(v for v in now.values if v in then.values)), True


def stricter(now: Decision, then: Decision) -> tuple[Decision, list[str]]:
    """The stricter of today's and then's decision, and what came from then (see the module doc)."""
    if not now.allowed:
        return now, []
    if not then.allowed:
        reason = f"at that time: {then.reason}"
        return replace(now, allowed=False, reason=reason, masks={}, row_filter=None), [
            f"denied then: {then.reason}"
        ]
    applied: list[str] = []
    masks = dict(now.masks)
    for column, kind in sorted(then.masks.items()):
        kept = masks.get(column)
        masks[column] = kind if kept is None else _stronger(kept, kind)
        if masks[column] != kept:
            applied.append(f"{column} masked ({masks[column]}) as then")
    rows, expressible = _rows(now.row_filter, then.row_filter)
    if not expressible:
        return replace(now, allowed=False, reason="the row scope then and today's cannot be combined"), [
            "denied: row scopes on different columns"
        ]
    if rows != now.row_filter:
        applied.append(f"rows limited to {rows.describe() if rows else 'none'} as then")
    return replace(now, masks=masks, row_filter=rows), applied


def decide_as_of(
    log: AccessLog, subject: str, spec: ProductSpec, action: str, now: Decision, at: datetime
) -> tuple[Decision, dict[str, object]]:
    """`now` combined with the decision in force at `at` (for `spec` as published then), and the
    governance note saying what was applied. Raises HistoryError if the log cannot be trusted."""
    try:
        then, change = History(log, log.engine).decide(subject, spec, action, at)
    except NotRecorded as exc:
        return now, {
            "at": utc_timestamp(at),
            "policyVersion": None,
            "applied": [],
            "note": f"{exc}: today's rights",
        }
    combined, applied = stricter(now, then)
    note = "stricter than today's: applied" if applied else "not stricter than today's"
    return combined, {
        "at": utc_timestamp(at),
        "policyVersion": then.policy_version,
        "changedAt": change.ts if change else None,
        "applied": applied,
        "note": f"the rights in force then are {note}",
    }
