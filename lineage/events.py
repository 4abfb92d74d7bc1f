"""Pure builders of OpenLineage RunEvents for the steps that move data: ingest, publish, read.

No I/O here: callers hand the events to the outbox (`LineageRecorder.record`). Each builder returns
the START and the terminal event of one run (or only the terminal one with `include_start=False`,
for callers that already recorded START when the step began). dbt models are in `lineage.dbt`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from openlineage.client.event_v2 import RunEvent
from openlineage.client.generated import (
    dataset_version_dataset,
    documentation_dataset,
    ownership_dataset,
    schema_dataset,
    tags_dataset,
)
from openlineage.client.generated.base import DatasetFacet

from lineage import naming
from lineage.facets import ACCESS_FACET, PRODUCER, PRODUCT_FACET, AccessDecisionRunFacet, ProductDatasetFacet
from lineage.naming import DatasetRef, ParentRef
from lineage.read_events import (  # the request path's, as plain data
    DecisionLike,
    new_run_id,
    read_event_dict,
)
from lineage.runs import (  # re-exported: producers need only `lineage.events`
    identity_column_lineage,
    input_dataset,
    lifecycle,
    make_job,
    now_iso,
    output_dataset,
    schema_facet,
    to_dict,
    to_json,
)
from meshcore.products import ProductSpec

__all__ = [
    "DecisionLike",
    "ingest_events",
    "input_dataset",
    "lifecycle",
    "make_job",
    "new_run_id",
    "now_iso",
    "output_dataset",
    "publish_events",
    "read_event",
    "read_event_dict",
    "schema_facet",
    "to_dict",
    "to_json",
]


def spec_schema_facet(
    spec: ProductSpec, only: Sequence[str] | None = None
) -> schema_dataset.SchemaDatasetFacet:
    return _spec_schema_facet(spec, None if only is None else tuple(only))


@lru_cache(maxsize=4096)  # a caller reads the same columns of the same product again and again
def _spec_schema_facet(spec: ProductSpec, only: tuple[str, ...] | None) -> schema_dataset.SchemaDatasetFacet:
    columns = spec.columns if only is None else [c for name in only if (c := spec.column(name)) is not None]
    return schema_facet((c.name, c.data_type, c.description) for c in columns)


def pii_tags_facet(spec: ProductSpec) -> tags_dataset.TagsDatasetFacet:
    """PII columns as standard column tags, so any OpenLineage consumer can see them."""
    tags = [
        tags_dataset.TagsDatasetFacetFields(key="pii", value=mask, source="civicmesh", field=column)
        for column, mask in spec.pii_columns.items()
    ]
    tags.append(tags_dataset.TagsDatasetFacetFields(key="classification", value=spec.classification))
    return tags_dataset.TagsDatasetFacet(tags=tags, producer=PRODUCER)


# -- the steps ------------------------------------------------------------------------------------


def ingest_events(
    run_id: str,
    parent: ParentRef | None,
    landing_path: Path | str | Sequence[Path | str],
    raw_relation: str,
    row_count: int | None,
    status: str = "COMPLETE",
    *,
    warehouse_path: Path | str,
    schema: Sequence[tuple[str, str]] | None = None,
    started_at: datetime | str | None = None,
    ended_at: datetime | str | None = None,
    error: str | None = None,
    include_start: bool = True,
) -> list[RunEvent]:
    """Landing file(s) -> raw DuckDB table."""
    paths = [landing_path] if isinstance(landing_path, str | Path) else list(landing_path)
    inputs = [input_dataset(naming.file_dataset(p)) for p in paths]
    raw = naming.duckdb_dataset(warehouse_path, raw_relation)
    facets: dict[str, DatasetFacet] = {"schema": schema_facet(schema)} if schema else {}
    outputs = [output_dataset(raw, facets, row_count=row_count)]
    return lifecycle(
        run_id=run_id,
        parent=parent,
        job=make_job(naming.ingest_job(raw_relation), "INGEST"),
        inputs=inputs,
        outputs=outputs,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        error=error,
        include_start=include_start,
    )


def product_facets(
    spec: ProductSpec,
    snapshot_id: str | None,
    snapshot_path: Path | str | None = None,
    schema: Sequence[tuple[str, str]] | None = None,
    checksum: str | None = None,
) -> dict[str, DatasetFacet]:
    facets: dict[str, DatasetFacet] = {
        "schema": schema_facet(schema) if schema else spec_schema_facet(spec),
        "ownership": ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=f"team:{spec.department}", type="OWNER")], producer=PRODUCER
        ),
        PRODUCT_FACET: ProductDatasetFacet(
            classification=spec.classification,
            owner=spec.owner,
            snapshotId=snapshot_id,
            snapshotPath=str(snapshot_path) if snapshot_path else None,
            checksum=checksum,
            piiColumns=dict(spec.pii_columns),
            scopeColumn=spec.scope_column,
            producer=PRODUCER,
        ),
    }
    if snapshot_id:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=snapshot_id, producer=PRODUCER
        )
    if spec.description:
        facets["documentation"] = documentation_dataset.DocumentationDatasetFacet(
            description=spec.description, producer=PRODUCER
        )
    facets["tags"] = pii_tags_facet(spec)
    return facets


def publish_events(
    run_id: str,
    parent: ParentRef | None,
    spec: ProductSpec,
    snapshot_id: str | None,
    snapshot_path: Path | str | None,
    row_count: int | None,
    schema: Sequence[tuple[str, str]] | None = None,
    status: str = "COMPLETE",
    *,
    source: DatasetRef | None = None,
    checksum: str | None = None,
    byte_size: int | None = None,
    started_at: datetime | str | None = None,
    ended_at: datetime | str | None = None,
    error: str | None = None,
    include_start: bool = True,
) -> list[RunEvent]:
    """Mart table -> product dataset; the output's version is the snapshot id.

    `source` is the mart's DuckDB dataset (`naming.duckdb_dataset(warehouse, relation)`); a blocked
    publish is reported with status FAIL and the reason in `error`.
    """
    inputs = [input_dataset(source)] if source is not None else []
    product = naming.product_dataset(spec.name)
    facets = product_facets(spec, snapshot_id, snapshot_path, schema, checksum)
    if source is not None:
        # A snapshot is a copy of the mart: every column is an identity of the mart's column, which
        # lets column lineage (and PII) run on from the warehouse to the product and its readers.
        names = [c[0] for c in schema] if schema else [c.name for c in spec.columns]
        facets["columnLineage"] = identity_column_lineage(source, names)
    outputs = [output_dataset(product, facets, row_count=row_count, size=byte_size)]
    return lifecycle(
        run_id=run_id,
        parent=parent,
        job=make_job(naming.publish_job(spec.name), "PUBLISH"),
        inputs=inputs,
        outputs=outputs,
        status=status,
        started_at=started_at,
        ended_at=ended_at,
        error=error,
        include_start=include_start,
    )


def read_event(
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
    parent: ParentRef | None = None,
    event_time: datetime | str | None = None,
) -> RunEvent:
    """One event per governed read or export: a consumer job per caller reading a product snapshot.

    A single terminal event (no START): a read is one request, and halving the events keeps the
    outbox append on the request path cheap. Denied reads are FAIL events without inputs, so they are
    audited but never become lineage edges.
    """
    access = AccessDecisionRunFacet(
        requestId=request_id,
        subject=subject,
        action=decision.action,
        allowed=decision.allowed,
        reason=decision.reason,
        policyVersion=decision.policy_version,
        rule=decision.rule,
        ruleSource=getattr(decision, "source", None),  # newer Decisions say where the rule lives
        masks=dict(decision.masks),
        rowFilter=decision.row_filter.as_dict() if decision.row_filter else None,
        rowsReturned=rows,
        exportFormat=export_format,
        producer=PRODUCER,
    )
    inputs = []
    if decision.allowed:
        facets: dict[str, DatasetFacet] = {"schema": spec_schema_facet(spec, columns_returned)}
        if snapshot_id:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=snapshot_id, producer=PRODUCER
            )
        inputs.append(input_dataset(naming.product_dataset(spec.name), facets))
    job = make_job(
        naming.consumer_job(subject, export=export_format is not None),
        "EXPORT" if export_format else "READ",
    )
    events = lifecycle(
        run_id=run_id or new_run_id(),
        parent=parent,
        job=job,
        inputs=inputs,
        outputs=[],
        status="COMPLETE" if decision.allowed else "FAIL",
        ended_at=event_time,
        error=None if decision.allowed else decision.reason,
        include_start=False,
        run_facets={ACCESS_FACET: access},
    )
    return events[0]
