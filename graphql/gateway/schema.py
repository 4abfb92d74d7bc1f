"""The Strawberry schema, generated from the catalog: one field per department, one per product.

Rebuilt whenever `Catalog.version()` changes (see app.SchemaHolder), so a new publish — even with
a new column — is served without a restart. Every generated resolver gets a unique `__name__`
(create_type keys fields by it) and an explicit signature with real types (strawberry reads it).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import logging
import types
import weakref
from dataclasses import dataclass
from typing import Any, Optional

import strawberry
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.extensions.disable_introspection import DisableIntrospection
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import create_type
from strawberry.types import ExecutionResult
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

from gateway import plain_arguments
from gateway import types as t
from gateway.access_fields import AccessMutation, AccessRequestQuery
from gateway.aggregates_schema import aggregate_field
from gateway.audit_fields import AuditQuery
from gateway.catalog_fields import CatalogQuery
from gateway.compiled import Plans, RowsField
from gateway.context import CatalogState, RequestContext
from gateway.errors import MASKED_MESSAGE, bad_input, should_mask
from gateway.fastrows import execution_context_for
from gateway.limits import MAX_TOKENS, CheapLimits
from gateway.lineage_fields import LineageQuery
from gateway.naming import camel, pascal, valid
from gateway.query import BIGINT, BOOL, DATE, DATETIME, FLOAT, INT, OPERATORS, STRING, type_kind
from gateway.reads import Wanted, read_page, wanted_from
from gateway.visibility import CallerSchemas, scrub_suggestions
from meshcore.catalog import CatalogEntry
from meshcore.products import ColumnSpec, ProductSpec

log = logging.getLogger(__name__)

MAX_DEPTH = 10
MAX_ALIASES = 30
_MASK_ERRORS = functools.partial(MaskErrors, should_mask_error=should_mask, error_message=MASKED_MESSAGE)

_SCALARS: dict[str, tuple[Any, Any]] = {  # kind -> (output type, filter input)
    STRING: (str, t.StringFilter),
    INT: (int, t.IntFilter),
    BIGINT: (t.BigInt, t.BigIntFilter),
    FLOAT: (float, t.FloatFilter),
    BOOL: (bool, t.BooleanFilter),
    DATE: (dt.date, t.DateFilter),
    DATETIME: (dt.datetime, t.DateTimeFilter),
}


def _scalar(column: ColumnSpec) -> tuple[Any, Any | None]:
    # Types with no filter (e.g. JSON, lists) are served as text and cannot be filtered.
    return _SCALARS.get(type_kind(column.data_type), (str, None))


def _columns(spec: ProductSpec) -> list[ColumnSpec]:
    seen: set[str] = set()
    out = []
    for column in spec.columns:
        name = camel(column.name)
        if not valid(name) or name in seen:
            log.warning("%s: column %r has no usable GraphQL name; not served", spec.name, column.name)
            continue
        seen.add(name)
        out.append(column)
    return out


def _field(python_name: str, graphql_name: str, graphql_type: Any, description: str = "") -> StrawberryField:
    field = strawberry.field(name=graphql_name, graphql_type=graphql_type, description=description or None)
    field.python_name = python_name
    return field


def _read_fields(inputs: dict[str, ProductInputs]) -> list[tuple[str, str]]:
    """(department type, field) of every product's rows and aggregate fields."""
    return [
        (read.department_type, name)
        for read in inputs.values()
        for name in (read.field_name, f"{read.field_name}Aggregate")
    ]


def _fast_row_fields(schema: strawberry.Schema, row_types: list[str]) -> None:
    """Row fields are plain dict lookups: hand them to graphql-core's default resolver (which
    reads Mappings by GraphQL field name) instead of Strawberry's per-field wrapper. With 100 rows
    x N columns this is most of the execution time of a page."""
    for name in row_types:
        for field in schema._schema.type_map[name].fields.values():  # type: ignore[attr-defined]
            field.resolve = None


def _input_class(name: str, description: str) -> type:
    return types.new_class(name, (), {}, lambda ns: ns.update({"__doc__": description}))


def _where_type(prefix: str, columns: list[ColumnSpec]) -> tuple[type, dict[str, str]]:
    cls = _input_class(f"{prefix}Where", "All conditions must hold; combine with and/or/not.")
    annotations: dict[str, Any] = {}
    filterable: dict[str, str] = {}
    for column in columns:
        _, filter_type = _scalar(column)
        if filter_type is None:
            continue
        annotations[column.name] = Optional[filter_type]  # noqa: UP045 - evaluated at runtime
        setattr(cls, column.name, strawberry.field(default=None, name=camel(column.name)))
        filterable[column.name] = column.name
    annotations["and_"] = Optional[list[cls]]  # type: ignore[valid-type]  # noqa: UP045
    annotations["or_"] = Optional[list[cls]]  # type: ignore[valid-type]  # noqa: UP045
    annotations["not_"] = Optional[cls]  # noqa: UP045
    cls.and_ = strawberry.field(default=None, name="and")  # type: ignore[attr-defined]
    cls.or_ = strawberry.field(default=None, name="or")  # type: ignore[attr-defined]
    cls.not_ = strawberry.field(default=None, name="not")  # type: ignore[attr-defined]
    cls.__annotations__ = annotations
    return strawberry.input(cls), filterable


def _order_type(prefix: str, columns: list[ColumnSpec]) -> type:
    cls = _input_class(f"{prefix}OrderBy", "Set exactly one column per entry, e.g. {createdAt: DESC}.")
    annotations: dict[str, Any] = {}
    for column in columns:
        annotations[column.name] = Optional[t.SortDirection]  # noqa: UP045
        setattr(cls, column.name, strawberry.field(default=None, name=camel(column.name)))
    cls.__annotations__ = annotations
    return strawberry.input(cls)


def where_to_dict(where: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    """A `where` argument (plain data, `plain_arguments.plain`) -> the structure query.PageQuery
    understands."""
    out: dict[str, Any] = {}
    for column in columns:
        ops = where.get(column)
        if ops is not None:
            out[column] = {op: ops[op] for op in OPERATORS if ops.get(op) is not None}
    if where.get("and_") is not None:
        out["and"] = [where_to_dict(w, columns) for w in where["and_"]]
    if where.get("or_") is not None:
        out["or"] = [where_to_dict(w, columns) for w in where["or_"]]
    if where.get("not_") is not None:
        out["not"] = where_to_dict(where["not_"], columns)
    return out


def order_to_list(order_by: list[dict[str, Any]] | None, columns: list[ColumnSpec]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in order_by or ():
        chosen = [(c.name, item[c.name]) for c in columns if item.get(c.name) is not None]
        if len(chosen) != 1:
            raise bad_input("Each `orderBy` entry must name exactly one column.")
        name, direction = chosen[0]
        out.append((name, direction.value))
    return out


@dataclass(frozen=True)
class ProductInputs:
    """Where a product's rows field lives and how its `where`/`orderBy` arguments become a query:
    the resolver and exports (`arguments.read_arguments`) both convert through this."""

    department_type: str  # GraphQL type holding the field, e.g. PublicWorksDepartment
    field_name: str  # e.g. serviceRequests
    filterable: dict[str, str]
    columns: list[ColumnSpec]

    def where(self, where: dict[str, Any] | None) -> dict[str, Any] | None:
        return where_to_dict(where, self.filterable) if where is not None else None

    def order(self, order_by: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
        return order_to_list(order_by, self.columns)


def _connection_type(prefix: str, spec: Any, columns: list[Any]) -> Any:
    """`<Prefix>Connection` of `<Prefix>Row` (one nullable field per column): the rows field's type."""
    row = create_type(
        f"{prefix}Row",
        [_field(c.name, camel(c.name), Optional[_scalar(c)[0]], c.description) for c in columns],  # noqa: UP045
        description=f"One row of {spec.name}.",
    )
    return create_type(
        f"{prefix}Connection",
        [
            _field("total_count", "totalCount", Optional[int], "Rows matching, after your row scope."),  # noqa: UP045
            _field("nodes", "nodes", list[row]),  # type: ignore[valid-type]  # types built per product at run time
            _field("page_info", "pageInfo", t.PageInfo),
            _field("snapshot", "snapshot", t.SnapshotRef),
        ],
    )


def _read_signature(where_type: Any, order_type: Any, connection: Any) -> inspect.Signature:
    """The rows resolver's signature as Strawberry reads it: the GraphQL arguments and their types."""
    param = inspect.Parameter
    kw = param.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [
            param("root", kw),
            param("info", kw, annotation=strawberry.Info),
            param("where", kw, default=None, annotation=Optional[where_type]),  # noqa: UP045
            param("order_by", kw, default=None, annotation=Optional[list[order_type]]),  # noqa: UP045
            param("first", kw, default=None, annotation=Optional[int]),  # noqa: UP045
            param("after", kw, default=None, annotation=Optional[str]),  # noqa: UP045
            param("as_of", kw, default=None, annotation=Optional[dt.datetime]),  # noqa: UP045
        ],
        return_annotation=Optional[connection],  # noqa: UP045
    )


async def read_rows(
    name: str,
    read: ProductInputs,
    ctx: RequestContext,
    wanted: Wanted,
    where: dict[str, Any] | None = None,
    order_by: list[dict[str, Any]] | None = None,
    first: int | None = None,
    after: str | None = None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """The rows field of product `name` (arguments by Python name, as `plain_arguments` gives
    them): its resolver and the compiled path (`compiled.py`) both read through this."""
    current = ctx.state.entries[name]
    return await read_page(ctx, current, wanted, read.where(where), read.order(order_by), first, after, as_of)


def _rows_fields(inputs: dict[str, ProductInputs]) -> dict[tuple[str, str], RowsField]:
    """(department type, field name) -> the rows field of each product, for compiled reads."""
    return {
        (read.department_type, read.field_name): RowsField(
            functools.partial(read_rows, name, read), {camel(c.name): c.name for c in read.columns}
        )
        for name, read in inputs.items()
    }


def _product_fields(
    entry: CatalogEntry, row_types: list[str], inputs: dict[str, ProductInputs]
) -> list[StrawberryField]:
    spec = entry.spec
    columns = _columns(spec)
    if not columns:
        return []
    prefix = pascal(spec.department) + pascal(spec.product)
    row_types.append(f"{prefix}Row")
    connection = _connection_type(prefix, spec, columns)
    where_type, filterable = _where_type(prefix, columns)
    order_type = _order_type(prefix, columns)
    column_by_field = {camel(c.name): c.name for c in columns}
    name = spec.name
    read = ProductInputs(f"{pascal(spec.department)}Department", camel(spec.product), filterable, columns)
    inputs[name] = read

    async def resolve(  # called by graphql-core with plain arguments (plain_arguments.install)
        root: Any,
        info: strawberry.Info,
        where: dict[str, Any] | None = None,
        order_by: list[dict[str, Any]] | None = None,
        first: int | None = None,
        after: str | None = None,
        as_of: dt.datetime | None = None,
    ) -> Any:
        wanted = wanted_from(info, column_by_field)
        return await read_rows(name, read, info.context, wanted, where, order_by, first, after, as_of)

    resolve.__name__ = f"resolve_{spec.department}__{spec.product}"
    resolve.__signature__ = _read_signature(where_type, order_type, connection)  # type: ignore[attr-defined]
    description = spec.description or spec.name
    rows_field = strawberry.field(resolver=resolve, name=camel(spec.product), description=description)
    aggregate = aggregate_field(
        entry, prefix, columns, _scalar, where_type, where_to_dict, filterable, _field
    )
    return [rows_field, aggregate]


# The generated fields of each product, by spec (types: `<Prefix>Row`, `Connection`, `Where`,
# `OrderBy` and the aggregate's; their names; the rows field's inputs). They depend on the spec alone,
# so the schema of each caller's discoverable set (visibility.py: built on the first request of a
# caller with that set) and of the next catalog state reuse them instead of creating ~10 Strawberry
# types per product again (~25 ms each). Shared between schemas like the static types of types.py;
# `build_schema` keeps those of the current catalog only.
_ProductTypes = tuple[list[StrawberryField], list[str], dict[str, ProductInputs]]
_product_types: dict[ProductSpec, _ProductTypes] = {}


def _shared_product_fields(
    entry: CatalogEntry, row_types: list[str], inputs: dict[str, ProductInputs]
) -> list[StrawberryField]:
    """`_product_fields` of `entry`, built once per spec (see `_product_types`)."""
    built = _product_types.get(entry.spec)
    if built is None:
        own_rows: list[str] = []
        own_inputs: dict[str, ProductInputs] = {}
        built = (_product_fields(entry, own_rows, own_inputs), own_rows, own_inputs)
        _product_types[entry.spec] = built
    fields, own_rows, own_inputs = built
    row_types.extend(own_rows)
    inputs.update(own_inputs)
    return fields


def _department_field(department: str, fields: list[StrawberryField]) -> StrawberryField:
    dept_type = create_type(
        f"{pascal(department)}Department", fields, description=f"Products of {department}."
    )

    def resolve_department() -> Any:
        return {}  # a marker object: the product fields below do the work

    resolve_department.__name__ = f"resolve_department__{department}"
    resolve_department.__annotations__ = {"return": Optional[dept_type]}  # noqa: UP045
    return strawberry.field(resolver=resolve_department, name=camel(department))


class GatewaySchema(strawberry.Schema):
    """A schema for one set of products. The one built from the whole catalog also routes each
    request to the schema of the products its caller may discover (`visibility.CallerSchemas`)."""

    callers: CallerSchemas | None = None
    product_inputs: dict[str, ProductInputs]  # product name -> its rows field's arguments
    plans: Plans  # compiled reads of this schema (compiled.py)

    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        _log_internal(errors, getattr(execution_context, "context", None))

    async def _execute_here(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """This schema's answer: a compiled read when the document has one (compiled.py), else
        Strawberry's execution, after which a document that ran clean is compiled."""
        query, variables, context, root, operation_name = args
        allowed = kwargs["allowed_operation_types"]
        plain = (
            root is None
            and not kwargs["operation_extensions"]
            and isinstance(query, str)
            and isinstance(operation_name, (str, type(None)))  # JSON may send a list: a plan key hashes it
            and (allowed is None or OperationType.QUERY in allowed)
        )
        found = await self.plans.find(query, operation_name) if plain else None
        answer = await found[0].run(self._schema, context, variables, found[1]) if found else None
        if answer is not None:
            data, errors = answer
            if errors:
                _log_internal(errors, context)
                errors = _MASK_ERRORS()._process_errors(errors)
            return ExecutionResult(data=data, errors=errors or None, extensions={})
        result = await super().execute(*args, **kwargs)
        if plain and not result.errors and result.data is not None:
            self.plans.learn(self._schema, query, operation_name)
        return result

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Any = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> Any:
        args = (query, variable_values, context_value, root_value, operation_name)
        kwargs = {
            "allowed_operation_types": allowed_operation_types,
            "operation_extensions": operation_extensions,
        }
        callers = self.callers
        target = self if callers is None else await callers.schema_for(context_value)
        if target is self:
            result = await self._execute_here(args, kwargs)
        else:
            result = await target.execute(*args, **kwargs)
        scrub_suggestions(result.errors)
        if callers is not None and target is not self and result.errors and result.data is None:
            callers.audit_hidden(context_value, query, callers.visible(context_value))
        return result

    def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Any = None,
    ) -> Any:
        # No streaming transport is enabled today; should one be, it routes per caller too.
        target = self if self.callers is None else self.callers.schema_for_sync(context_value)
        args = (query, variable_values, context_value, root_value, operation_name, operation_extensions)
        if target is self:
            return super().stream(*args, allowed_operation_types)
        return target.stream(*args, allowed_operation_types)

    def execute_sync(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Any = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> Any:
        args = (query, variable_values, context_value, root_value, operation_name)
        kwargs = {
            "allowed_operation_types": allowed_operation_types,
            "operation_extensions": operation_extensions,
        }
        target = self if self.callers is None else self.callers.schema_for_sync(context_value)
        if target is self:
            result = super().execute_sync(*args, **kwargs)
        else:
            result = target.execute_sync(*args, **kwargs)
        scrub_suggestions(result.errors)
        return result


def _log_internal(errors: list[Any], ctx: Any) -> None:
    """Governed errors and invalid queries are the caller's business, not the operator's: only
    internal failures are logged (with their traceback), and only here, never to the caller."""
    request_id = getattr(ctx, "request_id", None)
    for error in errors:
        if should_mask(error):
            log.error("internal error in a resolver (request %s)", request_id, exc_info=error.original_error)


def _default_resolver(obj: Any, name: str) -> Any:
    return obj.get(name) if type(obj) is dict else getattr(obj, name)


def _build_one(state: CatalogState, demo_mode: bool) -> GatewaySchema:
    by_department: dict[str, list[StrawberryField]] = {}
    row_types: list[str] = []
    inputs: dict[str, ProductInputs] = {}
    for entry in sorted(state.entries.values(), key=lambda e: e.spec.name):
        try:
            fields = _shared_product_fields(entry, row_types, inputs)
        except Exception:  # one broken spec must not take the whole gateway down
            log.exception("product %s not served: schema generation failed", entry.spec.name)
            continue
        by_department.setdefault(entry.spec.department, []).extend(fields)
    namespace: dict[str, Any] = {"__annotations__": {}}
    for department, fields in by_department.items():
        if not fields:
            continue
        field = _department_field(department, fields)
        namespace[f"dept_{department}"] = field
        namespace["__annotations__"][f"dept_{department}"] = field.type
    bases = (CatalogQuery, AuditQuery, LineageQuery, AccessRequestQuery)
    query = strawberry.type(types.new_class("Query", bases, {}, lambda ns: ns.update(namespace)))
    # Classes and factories, never instances: Strawberry passes an instance through to every request
    # and points its `execution_context` at the latest one, so concurrent requests validated each
    # other's documents (HTTP 200 with "'NoneType' object has no attribute 'definitions'") and
    # MaskErrors masked another request's result while an internal error of this one went out.
    extensions: list[Any] = [
        CheapLimits,  # parses and validates (cached, off the event loop) after cheap checks
        functools.partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        functools.partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        functools.partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        _MASK_ERRORS,
    ]
    if not demo_mode:
        extensions.append(DisableIntrospection)
    schema = GatewaySchema(
        query=query,
        mutation=AccessMutation,
        execution_context_class=execution_context_for(row_types),
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=True, default_resolver=_default_resolver),
    )
    _fast_row_fields(schema, row_types)
    plain_arguments.install(schema, _read_fields(inputs), strawberry.Info)
    schema.product_inputs = inputs
    schema.plans = Plans(_rows_fields(inputs))
    return schema


# The caller schemas of the last catalog state, per mode: their sets are warmed after a publish.
_latest: dict[bool, weakref.ref[CallerSchemas]] = {}


def build_schema(state: CatalogState, demo_mode: bool) -> strawberry.Schema:
    """The schema of the whole catalog; each request executes on the schema of the products its
    caller may discover (built on first use per distinct set, then shared)."""
    schema = _build_one(state, demo_mode)
    current = {entry.spec for entry in state.entries.values()}
    for spec in [spec for spec in list(_product_types) if spec not in current]:  # copied: threads add
        _product_types.pop(spec, None)
    callers = CallerSchemas(state, schema, lambda subset: _build_one(subset, demo_mode))
    schema.callers = callers
    previous = _latest.get(demo_mode)
    previous_callers = previous() if previous is not None else None
    if previous_callers is not None:
        callers.warm_from(previous_callers)
    _latest[demo_mode] = weakref.ref(callers)
    return schema
