"""Aggregates per product: count, count distinct, sum, avg, min, max, grouped by columns and by a
date bucket — with the same row filter as rows (so totals never include rows out of scope) and
no use of masked columns (an aggregate over raw PII would leak it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.context import RequestContext, Touch
from gateway.duck import resolved
from gateway.errors import bad_input, limit_exceeded
from gateway.query import BIGINT, DATE, DATETIME, FLOAT, INT, PageQuery
from gateway.reads import authorize_read, record_failure
from gateway.selection import below, selected
from meshcore.catalog import CatalogEntry

METRICS = ("count", "count_distinct", "sum", "avg", "min", "max")
GRAPHQL_METRICS = {"count": "count", "countDistinct": "count_distinct", "sum": "sum", "avg": "avg"}
GRAPHQL_METRICS.update({"min": "min", "max": "max"})
BUCKETS = ("day", "week", "month", "quarter", "year")
MAX_GROUPS = 10_000
NUMERIC = {INT, BIGINT, FLOAT}


@dataclass(frozen=True)
class Metric:
    key: tuple[str, str]  # response keys (alias or field name) of its `groups` field and its own
    kind: str  # one of METRICS
    column: str | None  # None for count(*)


@dataclass
class AggregateQuery(PageQuery):
    group_by: Sequence[str] = ()
    bucket: tuple[str, str] | None = None  # (column, unit)
    metrics: Sequence[Metric] = field(default_factory=list)

    def _metric_sql(self, metric: Metric) -> str:
        if metric.column is None:
            return "count(*)"
        x = self._column(metric.column, "aggregate")
        kind = self.kinds[metric.column]
        if metric.kind == "count_distinct":
            return f"count(DISTINCT {x})"
        if metric.kind in ("sum", "avg"):
            if kind not in NUMERIC:
                raise bad_input(f"`{metric.kind}` needs a number column, not {metric.column!r}.")
            return f"CAST({metric.kind}({x}) AS DOUBLE)"
        return f"CAST({metric.kind}({x}) AS VARCHAR)"  # min/max of any type, as text

    def aggregate_sql(self) -> tuple[str, list[Any]]:
        params: list[Any] = []
        where = self._filter(params)
        groups = [f"{self._column(c, 'group by')} AS g{i}" for i, c in enumerate(self.group_by)]
        if self.bucket is not None:
            column, unit = self.bucket
            if unit not in BUCKETS:
                raise bad_input(f"Unknown bucket unit {unit!r}.")
            if self.kinds.get(column) not in (DATE, DATETIME):
                raise bad_input(f"Bucket column {column!r} must be a date or timestamp.")
            groups.append(f"date_trunc('{unit}', {self._column(column, 'bucket')}) AS \"b\"")
        # Output names are positional (m0, m1, ...): response keys (aliases) never enter the SQL.
        metrics = [f"{self._metric_sql(m)} AS m{i}" for i, m in enumerate(self.metrics)]
        select = ", ".join([*groups, *metrics]) or "count(*) AS m_all"
        group_by = f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else ""
        order_by = f" ORDER BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else ""
        params.append(self.limit + 1)
        return f"SELECT {select} FROM {self._source(False)}{where}{group_by}{order_by} LIMIT ?", params


def metrics_from(info: Any, column_by_enum: dict[str, str]) -> list[Metric]:
    """The metrics selected under every `groups` selection of every selection of this field, each
    keyed by both response keys: `a: groups { m: sum(...) } b: groups { m: avg(...) }` are two
    metrics, and a field written twice merges its selections (GraphQL spec §5.3.2)."""
    metrics: list[Metric] = []
    columns = set(column_by_enum.values())  # a `column` argument is an enum member whose value is one
    for groups in selected(info):
        if groups.name != "groups":
            continue
        for metric in below(info, groups):
            kind = GRAPHQL_METRICS.get(metric.name)
            if kind is None:
                continue
            arg = getattr(metric.arguments.get("column"), "value", None)
            column = arg if arg in columns else None
            if kind == "count":
                column = None  # count(*): rows per group
            elif column is None:
                raise bad_input(f"`{metric.name}` needs a `column`.")
            metrics.append(Metric(key=(groups.key, metric.key), kind=kind, column=column))
    return list({m.key: m for m in metrics}.values())


def _used_columns(
    group_by: Iterable[str], bucket: tuple[str, str] | None, metrics: Iterable[Metric]
) -> list[str]:
    used = [*group_by, *([bucket[0]] if bucket else []), *(m.column for m in metrics if m.column)]
    return list(dict.fromkeys(used))


async def read_aggregate(
    ctx: RequestContext,
    entry: CatalogEntry,
    metrics: list[Metric],
    where: dict[str, Any] | None,
    group_by: list[str],
    bucket: tuple[str, str] | None,
    first: int | None,
    as_of: datetime | None,
) -> dict[str, Any]:
    spec = entry.spec
    touch = Touch(
        product=spec.name,
        action="read",
        decision=None,
        spec=spec,
        columns_requested=_used_columns(group_by, bucket, metrics),
    )
    try:
        limit = MAX_GROUPS if first is None else first
        if limit < 0 or limit > MAX_GROUPS:
            raise limit_exceeded(f"`first` must be between 0 and {MAX_GROUPS} groups.")
        snap, masks = await authorize_read(ctx, entry, touch, None, as_of)
        present = {name for name, _ in snap.schema}
        missing = [c for c in touch.columns_requested if c not in present]
        if missing:
            raise bad_input(f"Columns {missing} are not in the snapshot read (see `asOf`).")
        path = resolved(str(snap.path))
        query = AggregateQuery(
            spec=snap.spec,
            path=path,
            table=ctx.duck.source(path, snap.byte_size),
            columns=(),
            masks=masks,
            row_filter=touch.row_filter,
            where=where,
            limit=limit,
            group_by=group_by,
            bucket=bucket,
            metrics=metrics,
        )
        result = await ctx.duck.run_async(*query.aggregate_sql())
    except Exception as exc:
        record_failure(ctx, touch, exc)
        raise
    rows = result.rows[:limit]
    groups = []
    for row in rows:
        values = dict(zip(result.columns, row, strict=True))
        key = {c: values[f"g{i}"] for i, c in enumerate(group_by)}
        key["bucket"] = values.get("b")
        groups.append({"key": key, "metrics": {m.key: values[f"m{i}"] for i, m in enumerate(metrics)}})
    touch.rows = len(groups)
    touch.columns_returned = touch.columns_requested
    ctx.touch(touch)
    return {
        "groups": groups,
        "has_more_groups": len(result.rows) > limit,
        "snapshot": {"id": snap.id, "published_at": snap.published_at, "row_count": snap.row_count},
    }
