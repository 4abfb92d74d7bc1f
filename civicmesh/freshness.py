"""Freshness: is a product's current snapshot younger than the SLA its owner promised?"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from civicmesh.catalog import CatalogEntry


@dataclass(frozen=True)
class Freshness:
    status: str  # fresh | stale | unknown (never published or no SLA)
    age: timedelta | None
    sla: timedelta | None

    @property
    def description(self) -> str:
        if self.status == "unknown":
            return "no snapshot published yet" if self.age is None else "no freshness SLA declared"
        hours = self.age.total_seconds() / 3600 if self.age else 0.0
        sla_hours = self.sla.total_seconds() / 3600 if self.sla else 0.0
        return f"{self.status}: published {hours:.1f} h ago, SLA {sla_hours:g} h"


def freshness(entry: CatalogEntry, now: datetime) -> Freshness:
    sla = timedelta(hours=entry.spec.freshness_sla_hours) if entry.spec.freshness_sla_hours else None
    if entry.current is None:
        return Freshness("unknown", None, sla)
    age = now - entry.current.published_at
    if sla is None:
        return Freshness("unknown", age, None)
    return Freshness("fresh" if age <= sla else "stale", age, sla)
