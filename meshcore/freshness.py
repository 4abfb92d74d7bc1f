"""Freshness: did a build confirm a product's current snapshot within the SLA its owner promised?

Two clocks: "last changed" is when the current snapshot was published (its content changed);
"last verified" is when a build last confirmed it (the catalog's `verified_at`: a rebuild whose
data did not change republishes nothing but still verifies). The SLA runs from the last
verification, so a product that rightly did not change stays fresh; one whose builds stopped or
whose checks fail (nothing is verified then) turns stale. Without a verification record (a snapshot
published before verifications were recorded) the publish time counts as the last verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from meshcore.catalog import CatalogEntry


@dataclass(frozen=True)
class Freshness:
    status: str  # fresh | stale | unknown (never published or no SLA)
    age: timedelta | None  # since last verified
    sla: timedelta | None
    last_changed: datetime | None = None
    last_verified: datetime | None = None

    @property
    def description(self) -> str:
        if self.status == "unknown" or self.age is None or self.sla is None:
            return "no snapshot published yet" if self.age is None else "no freshness SLA declared"
        hours = self.age.total_seconds() / 3600
        text = f"{self.status}: verified {hours:.1f} h ago"
        if self.last_changed and self.last_verified and self.last_verified > self.last_changed:
            unchanged = hours + (self.last_verified - self.last_changed).total_seconds() / 3600
            text += f" (data unchanged for {unchanged:.1f} h)"
        return f"{text}, SLA {self.sla.total_seconds() / 3600:g} h"


def freshness(entry: CatalogEntry, now: datetime) -> Freshness:
    sla = timedelta(hours=entry.spec.freshness_sla_hours) if entry.spec.freshness_sla_hours else None
    if entry.current is None:
        return Freshness("unknown", None, sla)
    changed = entry.current.published_at
    verified = max(entry.verified_at or changed, changed)
    age = now - verified
    status = "unknown" if sla is None else "fresh" if age <= sla else "stale"
    return Freshness(status, age, sla, last_changed=changed, last_verified=verified)
