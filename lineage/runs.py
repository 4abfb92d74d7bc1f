"""OpenLineage building blocks shared by every producer: run ids, runs, jobs, datasets, lifecycles.

Pure functions over the openlineage-python `event_v2` types; the step builders (`events`, `dbt`)
compose them, so every event civicmesh emits has the same producer, job facets and parent facet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from functools import cache, lru_cache
from typing import Any, cast
from uuid import UUID

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    column_lineage_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    sql_job,
)
from openlineage.client.generated.base import DatasetFacet, JobFacet, RunFacet

from lineage.facets import PRODUCER
from lineage.naming import DatasetRef, JobRef, ParentRef
from lineage.read_events import INTEGRATION, civicmesh_version, event_time_iso  # shared with reads

TERMINAL = {"COMPLETE": RunState.COMPLETE, "FAIL": RunState.FAIL, "ABORT": RunState.ABORT}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


_iso = event_time_iso


def to_json(event: RunEvent) -> str:
    return json.dumps(to_dict(event), sort_keys=True)


def to_dict(event: RunEvent) -> dict[str, Any]:
    """The event as plain JSON data, exactly as `openlineage.client.serde.Serde.to_dict` gives it
    (tests compare the two) in half the time: reads record one event per request."""
    return cast("dict[str, Any]", _plain(event))


def plain(value: Any) -> Any:
    """Any attrs OpenLineage object (event, facet, job) as plain JSON data, as `to_dict` gives it."""
    return _plain(value)


def _plain(value: Any) -> Any:
    if attr.has(value.__class__):
        out = {}
        for attribute in value.__attrs_attrs__:
            item = getattr(value, attribute.name)
            if item is not None:
                out[attribute.name] = _plain(item)
        return out
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        items = (_plain(v) for v in value if v is not None)
        return [v for v in items if v != {}]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


def parent_facet(parent: ParentRef) -> parent_run.ParentRunFacet:
    root = None
    if parent.root_run_id and parent.root_job_name:
        root = parent_run.Root(
            run=parent_run.RootRun(runId=parent.root_run_id),
            job=parent_run.RootJob(namespace=parent.root_namespace, name=parent.root_job_name),
        )
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=parent.run_id),
        job=parent_run.Job(namespace=parent.namespace, name=parent.job_name),
        root=root,
        producer=PRODUCER,
    )


def schema_facet(
    columns: Iterable[tuple[str, str] | tuple[str, str, str]],
) -> schema_dataset.SchemaDatasetFacet:
    """`columns`: (name, type) or (name, type, description)."""
    fields = []
    for position, column in enumerate(columns, start=1):
        name, data_type, *rest = column
        fields.append(
            schema_dataset.SchemaDatasetFacetFields(
                name=name,
                type=data_type or None,
                description=(rest[0] or None) if rest else None,
                ordinal_position=position,
            )
        )
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)


# Facets that never change for a job are built once and shared: validating facet URLs costs more
# than the rest of an event. Events are never mutated after they are built, so sharing is safe.
@lru_cache(maxsize=4096)
def make_job(ref: JobRef, job_type: str, sql: str | None = None) -> Job:
    facets: dict[str, JobFacet] = {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration=INTEGRATION, jobType=job_type, producer=PRODUCER
        )
    }
    if sql:
        facets["sql"] = sql_job.SQLJobFacet(query=sql, dialect="duckdb", producer=PRODUCER)
    return Job(namespace=ref.namespace, name=ref.name, facets=facets)


def _run(run_id: str, parent: ParentRef | None, extra: dict[str, RunFacet] | None = None) -> Run:
    facets: dict[str, RunFacet] = {"processing_engine": _engine_facet()}
    if parent is not None:
        facets["parent"] = parent_facet(parent)
    facets.update(extra or {})
    return Run(runId=run_id, facets=facets)


@cache
def _engine_facet() -> processing_engine_run.ProcessingEngineRunFacet:
    return processing_engine_run.ProcessingEngineRunFacet(
        version=civicmesh_version(), name="civicmesh", producer=PRODUCER
    )


def identity_column_lineage(
    source: DatasetRef, columns: Sequence[str]
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    identity = column_lineage_dataset.Transformation(type="DIRECT", subtype="IDENTITY", masking=False)
    fields = {
        name: column_lineage_dataset.Fields(
            inputFields=[
                column_lineage_dataset.InputField(
                    namespace=source.namespace, name=source.name, field=name, transformations=[identity]
                )
            ],
            transformationType="IDENTITY",
        )
        for name in columns
    }
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER)


def input_dataset(ref: DatasetRef, facets: dict[str, DatasetFacet] | None = None) -> InputDataset:
    return InputDataset(namespace=ref.namespace, name=ref.name, facets=facets or {})


def output_dataset(
    ref: DatasetRef,
    facets: dict[str, DatasetFacet] | None = None,
    row_count: int | None = None,
    size: int | None = None,
) -> OutputDataset:
    output_facets = {}
    if row_count is not None or size is not None:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=row_count, size=size, producer=PRODUCER
            )
        )
    return OutputDataset(
        namespace=ref.namespace,
        name=ref.name,
        facets=facets or {},
        outputFacets=output_facets,  # type: ignore[arg-type]  # OpenLineage types facet dicts invariantly
    )


def lifecycle(
    *,
    run_id: str,
    parent: ParentRef | None,
    job: Job,
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
    status: str = "COMPLETE",
    started_at: datetime | str | None = None,
    ended_at: datetime | str | None = None,
    error: str | None = None,
    include_start: bool = True,
    run_facets: dict[str, RunFacet] | None = None,
) -> list[RunEvent]:
    """START (optional) + the terminal event of one run. A failed run reports no outputs: nothing was
    written, so a lineage graph must not gain an edge from it."""
    status = status.upper()
    if status != "START" and status not in TERMINAL:
        raise ValueError(f"unknown run status {status!r}; use START, COMPLETE, FAIL or ABORT")
    extra = dict(run_facets or {})
    events = []
    if include_start or status == "START":
        events.append(
            RunEvent(
                eventType=RunState.START,
                eventTime=_iso(started_at),
                run=_run(run_id, parent, extra),
                job=job,
                inputs=inputs,
                outputs=outputs,
                producer=PRODUCER,
            )
        )
    if status == "START":
        return events
    if error:
        extra["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error[:4000], programmingLanguage="python", producer=PRODUCER
        )
    events.append(
        RunEvent(
            eventType=TERMINAL[status],
            eventTime=_iso(ended_at),
            run=_run(run_id, parent, extra),
            job=job,
            inputs=inputs,
            outputs=outputs if status == "COMPLETE" else [],
            producer=PRODUCER,
        )
    )
    return events
