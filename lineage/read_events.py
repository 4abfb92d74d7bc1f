"""The read event on the request path, as plain data, without loading openlineage-python.

`lineage.events.read_event` builds attrs objects (validated facet classes) that the outbox then walks
back into plain data: ~0.15 ms per request on the gateway's critical path, and importing
openlineage-python (its client loads every transport: requests, httpx, fsspec, yaml) was a fifth of
the gateway's start-up. `read_event_dict` builds the same OpenLineage 2-0-2 JSON data directly; the
schema URLs of the facets it writes are named here, and tests/lineage/test_lineage_read_fastpath.py
pins the whole event to `to_dict(read_event(...))` and each URL to the library's class, so an
upgrade of openlineage-python that changes a facet fails the tests instead of drifting.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, Protocol

from lineage import naming
from lineage.naming import ACCESS_FACET, PRODUCER, SCHEMA_BASE
from meshcore.products import ProductSpec


class RowFilterLike(Protocol):
    @property
    def column(self) -> str: ...
    @property
    def values(self) -> tuple[str, ...]: ...
    def as_dict(self) -> dict[str, Any]: ...


class DecisionLike(Protocol):
    """The fields of `policies.decision.Decision` a read event carries. Typed structurally because the
    lineage room may not import the policies room (ARCHITECTURE.md §3, tests/test_layout.py)."""

    @property
    def allowed(self) -> bool: ...
    @property
    def action(self) -> str: ...
    @property
    def rule(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def masks(self) -> dict[str, str]: ...
    @property
    def row_filter(self) -> RowFilterLike | None: ...


_SPEC = "https://openlineage.io/spec/"
SCHEMA_URLS = {
    "RunEvent": _SPEC + "2-0-2/OpenLineage.json#/$defs/RunEvent",
    "ErrorMessageRunFacet": _SPEC + "facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "DatasetVersionDatasetFacet": _SPEC
    + "facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "SchemaDatasetFacet": _SPEC + "facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "JobTypeJobFacet": _SPEC + "facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "ProcessingEngineRunFacet": _SPEC
    + "facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
    "AccessDecisionRunFacet": SCHEMA_BASE + "civicmesh_facets.json#/$defs/AccessDecisionRunFacet",
}
INTEGRATION = "CIVICMESH"  # the jobType facet's integration


def uuid7() -> str:
    """A UUIDv7 (RFC 9562 §5.7: 48-bit Unix milliseconds, then random bits): time-ordered, so ids
    sort by creation time in any store; the layout of openlineage-python's `generate_new_uuid`."""
    value = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80 | secrets.randbits(76)
    value = value & ~(0xF000 << 64) | 7 << 76  # version 7
    value = value & ~(0xC000 << 48) | 0x8000 << 48  # variant RFC 9562
    return str(uuid.UUID(int=value))


def new_run_id() -> str:
    """A new OpenLineage run id: a UUIDv7, so run ids sort by start time."""
    return uuid7()


def event_time_iso(value: datetime | str | None) -> str:
    """An event time as the events carry it (now, when None; a naive time is UTC)."""
    if value is None:
        return datetime.now(UTC).isoformat()
    if isinstance(value, str):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


@cache
def civicmesh_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("civicmesh")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _facet(kind: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": SCHEMA_URLS[kind], **fields}


@cache
def engine_facet_dict() -> dict[str, Any]:
    """The processing-engine run facet as plain data (shared: never mutate it)."""
    return _facet("ProcessingEngineRunFacet", version=civicmesh_version(), name="civicmesh")


@lru_cache(maxsize=4096)
def _job_dict(subject: str, export: bool) -> dict[str, Any]:
    ref = naming.consumer_job(subject, export=export)
    job_type = _facet(
        "JobTypeJobFacet",
        processingType="BATCH",
        integration=INTEGRATION,
        jobType="EXPORT" if export else "READ",
    )
    return {"namespace": ref.namespace, "name": ref.name, "facets": {"jobType": job_type}}


@lru_cache(maxsize=4096)  # a caller reads the same columns of the same product again and again
def _schema_facet_dict(spec: ProductSpec, only: tuple[str, ...]) -> dict[str, Any]:
    fields = []
    columns = [c for name in only if (c := spec.column(name)) is not None]
    for position, column in enumerate(columns, start=1):
        field: dict[str, Any] = {"name": column.name}
        if column.data_type:
            field["type"] = column.data_type
        if column.description:
            field["description"] = column.description
        fields.append({**field, "fields": [], "ordinal_position": position})
    return _facet("SchemaDatasetFacet", fields=fields)


def _optional(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _access_facet(
    request_id: str, subject: str, decision: DecisionLike, rows: int | None, export_format: str | None
) -> dict[str, Any]:
    access = _facet("AccessDecisionRunFacet")
    _optional(access, "requestId", request_id)
    _optional(access, "subject", subject)
    _optional(access, "action", decision.action)
    _optional(access, "allowed", decision.allowed)
    _optional(access, "reason", decision.reason)
    _optional(access, "policyVersion", decision.policy_version)
    _optional(access, "rule", decision.rule)
    _optional(access, "ruleSource", getattr(decision, "source", None))
    access["masks"] = {k: v for k, v in decision.masks.items() if v is not None}
    row_filter = decision.row_filter
    if row_filter:
        rf: dict[str, Any] = {}
        _optional(rf, "column", row_filter.column)
        rf["values"] = [v for v in row_filter.values if v is not None]
        access["rowFilter"] = rf
    _optional(access, "rowsReturned", rows)
    _optional(access, "exportFormat", export_format)
    return access


def read_event_dict(
    request_id: str,
    subject: str,
    spec: ProductSpec,
    snapshot_id: str | None,
    columns_returned: Sequence[str],
    decision: DecisionLike,
    rows: int | None,
    export_format: str | None = None,
    *,
    run_id: str | None = None,
    event_time: datetime | str | None = None,
) -> dict[str, Any]:
    """`to_dict(lineage.events.read_event(...))` with the same arguments (a read under a parent
    run is built by `read_event`, off the request path), built directly as plain
    data (the request path's version). The result shares cached sub-dicts between events: treat it
    as read-only (serialise it; never mutate it)."""
    run_facets: dict[str, Any] = {"processing_engine": engine_facet_dict()}
    run_facets[ACCESS_FACET] = _access_facet(request_id, subject, decision, rows, export_format)
    allowed = decision.allowed
    if not allowed and decision.reason:
        run_facets["errorMessage"] = _facet(
            "ErrorMessageRunFacet", message=decision.reason[:4000], programmingLanguage="python"
        )
    inputs: list[dict[str, Any]] = []
    if allowed:
        facets: dict[str, Any] = {"schema": _schema_facet_dict(spec, tuple(columns_returned))}
        if snapshot_id:
            facets["version"] = _facet("DatasetVersionDatasetFacet", datasetVersion=snapshot_id)
        ref = naming.product_dataset(spec.name)
        inputs.append({"namespace": ref.namespace, "name": ref.name, "facets": facets, "inputFacets": {}})
    return {
        "eventTime": event_time_iso(event_time),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URLS["RunEvent"],
        "run": {"runId": run_id or new_run_id(), "facets": run_facets},
        "job": _job_dict(subject, export_format is not None),
        "eventType": "COMPLETE" if allowed else "FAIL",
        "inputs": inputs,
        "outputs": [],
    }
