"""Audit questions answered from the stored events: runs and their status, dataset versions, consumers.

These read the outbox's indexed columns first (job namespace and name, run id) and parse only the
events that match, so they stay cheap as the history grows. They answer from what civicmesh recorded:
jobs in civicmesh's own namespace, never an event received from another producer
(`receiver.is_external`), so no external event can make someone look like a reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from lineage import naming
from lineage.outbox import Outbox, outbox_table
from lineage.receiver import is_external

TERMINAL = ("COMPLETE", "FAIL", "ABORT")


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    job: str
    state: str  # the latest event type seen for the run
    started: str | None
    ended: str | None
    parent_run_id: str | None
    error: str | None


@dataclass(frozen=True)
class Consumption:
    subject: str
    job: str
    reads: int
    rows: int
    first: str
    last: str
    columns: tuple[str, ...]
    snapshots: tuple[str, ...]


def _rows(outbox: Outbox, *where: Any) -> list[Any]:
    """civicmesh's own events matching `where`, in append order."""
    query = (
        select(outbox_table.c.event_json)
        .where(outbox_table.c.job_namespace == naming.JOB_NAMESPACE, *where)
        .order_by(outbox_table.c.seq)
    )
    with outbox.engine.connect() as conn:
        events = (json.loads(r.event_json) for r in conn.execute(query))
        return [e for e in events if not is_external(e)]


def runs(outbox: Outbox, job: str, limit: int = 50) -> list[RunSummary]:
    """The latest runs of `job` (newest first) with their state."""
    by_run: dict[str, dict[str, Any]] = {}
    for event in _rows(outbox, outbox_table.c.job_name == job):
        run_id = event["run"]["runId"]
        summary = by_run.setdefault(run_id, {"started": None, "ended": None, "error": None, "parent": None})
        summary["state"] = event.get("eventType") or "OTHER"
        facets = event["run"].get("facets") or {}
        summary["parent"] = summary["parent"] or ((facets.get("parent") or {}).get("run") or {}).get("runId")
        if event.get("eventType") == "START":
            summary["started"] = event["eventTime"]
        if event.get("eventType") in TERMINAL:
            summary["ended"] = event["eventTime"]
            summary["error"] = (facets.get("errorMessage") or {}).get("message")
    result = [
        RunSummary(run_id, job, s["state"], s["started"], s["ended"], s["parent"], s["error"])
        for run_id, s in by_run.items()
    ]
    return sorted(result, key=lambda r: r.ended or r.started or "", reverse=True)[:limit]


def dataset_versions(outbox: Outbox, product: str) -> list[dict[str, Any]]:
    """Every published version (snapshot) of a product, oldest first, with its row count."""
    ref = naming.product_dataset(product)
    versions = []
    for event in _rows(outbox, outbox_table.c.job_name == naming.publish_job(product).name):
        if event.get("eventType") != "COMPLETE":
            continue
        for output in event.get("outputs") or ():
            if (output["namespace"], output["name"]) != (ref.namespace, ref.name):
                continue
            facets = output.get("facets") or {}
            stats = (output.get("outputFacets") or {}).get("outputStatistics") or {}
            versions.append(
                {
                    "version": (facets.get("version") or {}).get("datasetVersion"),
                    "publishedAt": event["eventTime"],
                    "rowCount": stats.get("rowCount"),
                    "runId": event["run"]["runId"],
                }
            )
    return versions


def consumers(
    outbox: Outbox, product: str, since: datetime | None = None, until: datetime | None = None
) -> list[Consumption]:
    """Who read or exported `product` in [since, until): one line per caller and job."""
    ref = naming.product_dataset(product)
    acc: dict[str, dict[str, Any]] = {}
    for event in _rows(
        outbox, outbox_table.c.job_name.like("consumer.%"), outbox_table.c.event_type == "COMPLETE"
    ):
        when = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
        if (since and when < since) or (until and when >= until):
            continue
        for source in event.get("inputs") or ():
            if (source["namespace"], source["name"]) != (ref.namespace, ref.name):
                continue
            access = (event["run"].get("facets") or {}).get("civicmesh_access") or {}
            job = event["job"]["name"]
            item = acc.setdefault(
                job,
                {
                    "subject": access.get("subject", job),
                    "reads": 0,
                    "rows": 0,
                    "first": event["eventTime"],
                    "columns": set(),
                    "snapshots": set(),
                },
            )
            item["reads"] += 1
            item["rows"] += access.get("rowsReturned") or 0
            item["last"] = event["eventTime"]
            facets = source.get("facets") or {}
            item["columns"] |= {f["name"] for f in (facets.get("schema") or {}).get("fields") or ()}
            if version := (facets.get("version") or {}).get("datasetVersion"):
                item["snapshots"].add(version)
    return [
        Consumption(
            i["subject"],
            job,
            i["reads"],
            i["rows"],
            i["first"],
            i["last"],
            tuple(sorted(i["columns"])),
            tuple(sorted(i["snapshots"])),
        )
        for job, i in sorted(acc.items())
    ]
