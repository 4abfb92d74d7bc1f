"""Automatic quarantine: a leak found by this build's PII gate that the product's *current* snapshot
already serves takes that snapshot out of service in the same build, and with it every older
servable snapshot that serves the same leak: "current" would otherwise move back to one of them (a
product published for a week holds the column in every snapshot of that week), and `asOf` reaches
them all.

A leak is a blocking PII finding (undeclared PII or unknown lineage) on a column the current
snapshot contains without a mask in the spec it was published with. A model the warehouse could not
describe is no finding about the data and never quarantines anything. `Catalog.withdraw` (kind
`quarantined`, the build as actor, the PII gate as the rule) moves "current" back to the last good
snapshot or to none and chains the change in the access log, with the findings as the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lineage.classification import NOT_DESCRIBED, PiiFinding
from meshcore.accesslog import AccessLog, AccessLogUnavailable
from meshcore.catalog import MAX_REASON_CHARS, Catalog, Snapshot, SystemAuthority, WithdrawError
from orchestration.gate import FailedCheck, GateResult

ACTOR = "civicmesh build"
RULE = "civicmesh PII gate"


def leaking(snapshot: Snapshot, leaks: tuple[PiiFinding, ...]) -> list[PiiFinding]:
    """The findings on columns `snapshot` serves unmasked (by the spec it was published with)."""
    served = {name.lower() for name, _ in snapshot.schema}
    masked = {c.name.lower() for c in snapshot.spec.columns if c.mask}
    return [
        f
        for f in leaks
        if f.column.lower() in served and f.column.lower() not in masked and f.reason != NOT_DESCRIBED
    ]


def quarantine_leaks(
    catalog: Catalog, access_log: AccessLog, gates: Mapping[str, GateResult], run_id: str
) -> dict[str, GateResult]:
    """Quarantine each product's current snapshot that serves a leak, and its older servable
    snapshots that serve one (oldest first, the current last, so "current" lands on a clean one or
    none); returns `gates` with one failed check per snapshot added (a quarantine that could not be
    done is one too, never a silent pass)."""
    updated = dict(gates)
    for name, gate in gates.items():
        current = catalog.current(name) if gate.leaks else None
        if current is None or not leaking(current, gate.leaks):
            continue
        older = [s for s in catalog.snapshots(name) if s.servable and s.id != current.id]
        checks = [
            _quarantine(catalog, access_log, name, snapshot, found, run_id)
            for snapshot in [*reversed(older), current]
            if (found := leaking(snapshot, gate.leaks))
        ]
        updated[name] = replace(gate, failed=(*gate.failed, *checks))
    return updated


def _quarantine(
    catalog: Catalog,
    access_log: AccessLog,
    name: str,
    snapshot: Snapshot,
    found: list[PiiFinding],
    run_id: str,
) -> FailedCheck:
    reason = "; ".join(f.message for f in found)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    authority = SystemAuthority(RULE, f"build {run_id}: personal data the product did not declare")
    try:
        result = catalog.withdraw(
            name, snapshot.id, reason, ACTOR, "quarantined", authority=authority, access_log=access_log
        )
    except (WithdrawError, AccessLogUnavailable) as exc:
        return FailedCheck("pii_gate.quarantine", f"could not quarantine {snapshot.id}: {exc}", "error")
    columns = ", ".join(f.column for f in found)
    now = f"; current is now {result.current.id if result.current else 'none'}" if result.moved else ""
    return FailedCheck(
        "pii_gate.quarantine", f"snapshot {snapshot.id} served {columns} and is quarantined{now}", "error"
    )
