"""Freshness checks: one per product with an SLA, evaluated against the catalog's current snapshot."""

from typing import Any

import dagster as dg

from meshcore.freshness import freshness
from meshcore.products import ProductSpec
from meshcore.settings import Settings
from meshcore.store import utcnow
from orchestration.automation import schedule_status
from orchestration.publish import publish_key
from orchestration.resources import MeshResource

FRESHNESS_CHECK = "freshness_sla"


def freshness_check(spec: ProductSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=publish_key(spec),
        name=FRESHNESS_CHECK,
        description=f"Current snapshot is younger than {spec.freshness_sla_hours:g} h (owner's SLA).",
        blocking=False,
    )
    def _check(mesh: MeshResource) -> dg.AssetCheckResult:
        entry = mesh.catalog().entry(spec.name)
        if entry is None:
            return dg.AssetCheckResult(passed=False, description="never published")
        state = freshness(entry, utcnow())
        return dg.AssetCheckResult(
            passed=state.status == "fresh",
            severity=dg.AssetCheckSeverity.WARN,
            description=state.description,
            metadata={
                "age_hours": (state.age.total_seconds() / 3600) if state.age else -1.0,
                **{
                    f"last_{clock}": dg.MetadataValue.timestamp(moment)
                    for clock, moment in (("changed", state.last_changed), ("verified", state.last_verified))
                    if moment is not None
                },
            },
        )

    return _check


def freshness_checks(specs: list[ProductSpec]) -> list[dg.AssetChecksDefinition]:
    return [freshness_check(s) for s in specs if s.freshness_sla_hours]


def freshness_job(specs: list[ProductSpec]) -> Any:
    return dg.define_asset_job(
        "check_freshness",
        selection=dg.AssetSelection.checks(
            *(dg.AssetCheckKey(publish_key(s), FRESHNESS_CHECK) for s in specs if s.freshness_sla_hours)
        ),
        description="Evaluate every product's freshness SLA against its current snapshot.",
    )


def hourly_freshness(job: Any, settings: Settings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        job=job, cron_schedule="17 * * * *", default_status=schedule_status(settings)
    )
