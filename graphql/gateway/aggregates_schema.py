"""GraphQL types for a product's aggregates: `<product>Aggregate(where:, groupBy:, bucket:, first:, asOf:)
{ groups { key { <columns> bucket } count countDistinct(column:) sum(column:) avg(column:) min(column:)
max(column:) } hasMoreGroups snapshot { id publishedAt } }`."""

from __future__ import annotations

import datetime as dt
import inspect
from enum import Enum
from typing import Any, Optional

import strawberry
from strawberry.tools import create_type
from strawberry.types.field import StrawberryField

from gateway import types as t
from gateway.aggregates import metrics_from, read_aggregate
from gateway.context import RequestContext
from gateway.naming import camel
from meshcore.catalog import CatalogEntry
from meshcore.products import ColumnSpec


@strawberry.enum
class DateBucket(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def _metric(name: str, graphql_name: str, result: Any, column_enum: Any | None) -> StrawberryField:
    def resolve(root: Any, info: strawberry.Info, column: Any = None) -> Any:
        # Computed in SQL, keyed by (its `groups` response key, its own): path = groups key/index/key.
        return root["metrics"].get((info.path.prev.prev.key, info.path.key))

    resolve.__name__ = name
    params = [
        inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("info", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=strawberry.Info),
    ]
    if column_enum is not None:
        params.append(
            inspect.Parameter("column", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=column_enum)
        )
    resolve.__signature__ = inspect.Signature(params, return_annotation=Optional[result])  # type: ignore[attr-defined]  # noqa: UP045
    return strawberry.field(resolver=resolve, name=graphql_name)


def _aggregate_types(
    prefix: str, columns: list[ColumnSpec], scalar: Any, key_field: Any
) -> tuple[Any, Any, Any]:
    """(`<Prefix>Column` enum, `<Prefix>Bucket` input, `<Prefix>Aggregate` result type): the
    types of one product's aggregate field."""
    column_enum = strawberry.enum(Enum(f"{prefix}Column", {c.name.upper(): c.name for c in columns}))  # type: ignore[call-overload]  # types built per product at run time
    bucket_type = create_type(
        f"{prefix}Bucket",
        [
            strawberry.field(name="column", graphql_type=column_enum),
            strawberry.field(name="unit", graphql_type=DateBucket),
        ],
        is_input=True,
    )
    key_type = create_type(
        f"{prefix}GroupKey",
        [
            *[key_field(c.name, camel(c.name), Optional[scalar(c)[0]]) for c in columns],  # noqa: UP045
            key_field("bucket", "bucket", Optional[dt.datetime], "Start of the date bucket."),  # noqa: UP045
        ],
    )
    group_type = create_type(
        f"{prefix}Group",
        [
            key_field("key", "key", key_type),
            _metric("count", "count", int, None),
            _metric("count_distinct", "countDistinct", int, column_enum),
            _metric("sum", "sum", float, column_enum),
            _metric("avg", "avg", float, column_enum),
            _metric("min", "min", str, column_enum),
            _metric("max", "max", str, column_enum),
        ],
    )
    result_type = create_type(
        f"{prefix}Aggregate",
        [
            key_field("groups", "groups", list[group_type]),  # type: ignore[valid-type]  # types built per product at run time
            key_field("has_more_groups", "hasMoreGroups", bool),
            key_field("snapshot", "snapshot", t.SnapshotRef),
        ],
    )
    return column_enum, bucket_type, result_type


def _aggregate_signature(where_type: Any, column_enum: Any, bucket_type: Any, result_type: Any) -> Any:
    """The aggregate resolver's signature as Strawberry reads it: the GraphQL arguments and types."""
    kw = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [
            inspect.Parameter("root", kw),
            inspect.Parameter("info", kw, annotation=strawberry.Info),
            inspect.Parameter("where", kw, default=None, annotation=Optional[where_type]),  # noqa: UP045
            inspect.Parameter("group_by", kw, default=None, annotation=Optional[list[column_enum]]),  # noqa: UP045
            inspect.Parameter("bucket", kw, default=None, annotation=Optional[bucket_type]),  # noqa: UP045
            inspect.Parameter("first", kw, default=None, annotation=Optional[int]),  # noqa: UP045
            inspect.Parameter("as_of", kw, default=None, annotation=Optional[dt.datetime]),  # noqa: UP045
        ],
        return_annotation=Optional[result_type],  # noqa: UP045
    )


def aggregate_field(
    entry: CatalogEntry,
    prefix: str,
    columns: list[ColumnSpec],
    scalar: Any,
    where_type: type,
    where_to_dict: Any,
    filterable: dict[str, str],
    key_field: Any,
) -> StrawberryField:
    name = entry.spec.name
    column_enum, bucket_type, result_type = _aggregate_types(prefix, columns, scalar, key_field)
    column_by_enum = {c.name.upper(): c.name for c in columns}

    async def resolve(  # called by graphql-core with plain arguments (plain_arguments.install)
        root: Any,
        info: strawberry.Info,
        where: dict[str, Any] | None = None,
        group_by: list[Any] | None = None,
        bucket: dict[str, Any] | None = None,
        first: int | None = None,
        as_of: dt.datetime | None = None,
    ) -> Any:
        ctx: RequestContext = info.context
        return await read_aggregate(
            ctx,
            ctx.state.entries[name],
            metrics_from(info, column_by_enum),
            where_to_dict(where, filterable) if where is not None else None,
            [g.value for g in group_by or ()],
            (bucket["column"].value, bucket["unit"].value) if bucket is not None else None,
            first,
            as_of,
        )

    resolve.__name__ = f"resolve_{entry.spec.department}__{entry.spec.product}__aggregate"
    signature = _aggregate_signature(where_type, column_enum, bucket_type, result_type)
    resolve.__signature__ = signature  # type: ignore[attr-defined]
    return strawberry.field(
        resolver=resolve,
        name=f"{camel(entry.spec.product)}Aggregate",
        description=f"Aggregates over {name}, within your row scope.",
    )
