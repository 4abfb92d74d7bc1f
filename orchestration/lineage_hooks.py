"""Recording OpenLineage events from Dagster steps: into the durable outbox, never blocking on delivery.

Delivery happens after the run (`civicmesh build` flushes) or in whichever process runs a
dispatcher; a lineage backend that is down never fails or slows a build.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from openlineage.client.event_v2 import RunEvent

from lineage.naming import ParentRef
from lineage.recorder import LineageRecorder
from meshcore.settings import Settings, lineage_enabled


def dagster_parent(context: dg.AssetExecutionContext) -> ParentRef:
    """The Dagster run as the OpenLineage parent, so lineage runs can be matched to Dagster runs."""
    return ParentRef(run_id=context.run_id, job_name=f"dagster.{context.job_name}")


def record(settings: Settings, events: Sequence[RunEvent]) -> None:
    if lineage_enabled():
        LineageRecorder.shared(settings).record(list(events))
