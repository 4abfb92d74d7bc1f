"""Compiled reads: the common request (one product's rows, `where`/`orderBy`/`first`/`after`/
`asOf`, selecting row columns, `pageInfo`, `totalCount` or `snapshot`) answered without Strawberry's
per-request extensions and graphql-core's field-by-field execution (issue 16, item 2).

A document that ran clean on a schema is compiled once per (schema, document text, operation name)
into a `ReadPlan` when it has that form exactly (`compile_read`: one query operation, one
department field, one rows field, plain fields below it: no fragments, directives, repeated
response keys or `__typename`). Each later request of that text on that schema is:

1. the checks of the full path that read the request rather than the text (variables at most
   `limits.MAX_VARIABLE_VALUES` JSON values), then graphql-core's own variable coercion and
   argument values (`get_variable_values`, `get_argument_values`): any error, and the request
   takes the full path instead (nothing has happened yet), so its errors are graphql-core's;
2. the rows field's own read (`RowsField.read`, what its resolver calls), with the selection
   (`reads.Wanted`) worked out at compile time;
3. the response data written by a plan of (response key, source name, serialiser) per object, the
   way graphql-core completes values: a scalar through its type's `serialize`, null where the type
   allows it.

What the text and schema fix is not checked again: the text parsed and validated with every rule on
this schema (that is why it ran clean; a schema is rebuilt, never changed, so the plans go with it).

Errors keep graphql-core's semantics: an exception from the read is located at the rows field and
nulls it (`handle_field_error`); a value the writer cannot complete (`_Incomplete`, or anything a
serialiser raises) is completed again by graphql-core's `complete_value`, which locates the error.
The errors are then logged (`process_errors`) and masked as Strawberry's `MaskErrors` would.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql.execution.execute import ExecutionContext
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema_converter import GraphQLCoreConverter

from gateway.limits import MAX_VARIABLE_VALUES, variable_values
from gateway.plain_arguments import argument_names, plain_arguments
from gateway.reads import Wanted, wanted
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    located_error,
)

BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
_SERIALIZE_STRING = GraphQLString.serialize


@dataclass(frozen=True)
class RowsField:
    """A product's rows field as the compiled path calls it: `read(ctx, wanted, **arguments)`
    (arguments by Python name, as `plain_arguments` gives them) returns the connection as the
    resolver does; `column_by_field` maps a row field's GraphQL name to its column."""

    read: Callable[..., Awaitable[Any]]
    column_by_field: Mapping[str, str]


class _Incomplete(Exception):
    """A value the writer does not complete itself (graphql-core completes it instead)."""


@dataclass(frozen=True)
class _Leaf:
    key: str
    source: str  # the key the value has in its dict
    serialize: Callable[[Any], Any]
    non_null: bool

    def write(self, value: Any) -> Any:
        if value is None:
            if self.non_null:
                raise _Incomplete
            return None
        if self.serialize is _SERIALIZE_STRING and type(value) is str:
            return value  # what serialize_string returns for a str
        out = self.serialize(value)
        if out is None or out is Undefined:
            raise _Incomplete
        return out


@dataclass(frozen=True)
class _Object:
    key: str
    source: str
    fields: tuple[_Leaf | _Object, ...]
    non_null: bool
    many: bool  # a non-null list of non-null objects (the rows' `nodes`)

    def write(self, value: Any) -> Any:
        if value is None:
            if self.non_null:
                raise _Incomplete
            return None
        if self.many:
            if type(value) is not list:
                raise _Incomplete
            return [self._one(item) for item in value]
        return self._one(value)

    def _one(self, value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _Incomplete
        get = value.get
        return {field.key: field.write(get(field.source)) for field in self.fields}


@dataclass(frozen=True)
class ReadPlan:
    """One compiled document: `run` answers a request of it, or returns None (full path)."""

    operation: OperationDefinitionNode
    department_key: str
    department_type: GraphQLObjectType
    rows_nodes: tuple[FieldNode, ...]
    rows_definition: GraphQLField
    rows: RowsField
    argument_names: dict[str, str]
    wanted: Wanted
    writer: _Object

    async def run(
        self, schema: GraphQLSchema, ctx: Any, variables: Any
    ) -> tuple[Any, list[GraphQLError]] | None:
        """(data, errors) of one request, or None when its variables or arguments have errors
        (the caller runs the full path, which reports them); nothing is read before that."""
        if variables is not None and type(variables) is not dict:
            return None
        if variables and variable_values(variables) > MAX_VARIABLE_VALUES:
            return None
        coerced = get_variable_values(schema, self.operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return None
        try:
            raw = get_argument_values(self.rows_definition, self.rows_nodes[0], coerced)
        except GraphQLError:
            return None
        path = Path(None, self.department_key, "Query").add_key(self.writer.key, self.department_type.name)
        executor: ExecutionContext | None = None
        try:
            value = await self.rows.read(
                ctx, self.wanted, **plain_arguments(self.rows_definition, raw, self.argument_names)
            )
        except Exception as exc:
            executor = self._executor(schema, ctx, variables)
            error = located_error(exc, list(self.rows_nodes), path.as_list())
            executor.handle_field_error(error, self.rows_definition.type, path)
            out = None
        else:
            try:
                out = self.writer.write(value)
            except Exception:  # graphql-core completes it and locates the error
                executor = self._executor(schema, ctx, variables)
                out = self._complete(executor, value, path)
        data = {self.department_key: {self.writer.key: out}}
        return data, list(executor.collected_errors.errors) if executor is not None else []

    def _executor(
        self, schema: GraphQLSchema, ctx: Any, variables: dict[str, Any] | None
    ) -> ExecutionContext:
        # The request's own variables: a required one (`$first: Int!`) is missing from none.
        built = ExecutionContext.build(
            schema, DocumentNode(definitions=(self.operation,)), None, ctx, variables
        )
        assert isinstance(built, ExecutionContext)  # these variables have just coerced without errors
        return built

    def _complete(self, executor: ExecutionContext, value: Any, path: Path) -> Any:
        nodes, definition = list(self.rows_nodes), self.rows_definition
        info = executor.build_resolve_info(definition, nodes, self.department_type, path)
        try:
            return executor.complete_value(definition.type, nodes, info, path, value)
        except Exception as exc:
            executor.handle_field_error(located_error(exc, nodes, path.as_list()), definition.type, path)
            return None


def compile_read(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    rows_fields: Mapping[tuple[str, str], RowsField],
) -> ReadPlan | None:
    """The plan of `document` (already valid on `schema`), or None if it is not of the compiled
    form (module docstring). `rows_fields`: (department type, field name) -> its rows field."""
    if len(document.definitions) != 1:
        return None
    operation = document.definitions[0]
    if not isinstance(operation, OperationDefinitionNode) or operation.operation != OperationType.QUERY:
        return None
    if operation_name is not None and (operation.name is None or operation.name.value != operation_name):
        return None
    if operation.directives or schema.query_type is None:
        return None
    department = _only_field(operation.selection_set)
    if department is None or department.arguments:
        return None
    department_field = schema.query_type.fields.get(department.name.value)
    department_type = _object(department_field.type) if department_field else None
    rows_node = _only_field(department.selection_set)
    if department_type is None or rows_node is None:
        return None
    rows = rows_fields.get((department_type.name, rows_node.name.value))
    rows_definition = department_type.fields.get(rows_node.name.value)
    if rows is None or rows_definition is None:
        return None
    writer = _object_plan(rows_node, rows_definition, "")
    if writer is None or writer.many:
        return None
    return ReadPlan(
        operation=operation,
        department_key=_key(department),
        department_type=department_type,
        rows_nodes=(rows_node,),
        rows_definition=rows_definition,
        rows=rows,
        argument_names=argument_names(rows_definition),
        wanted=_wanted(rows_node, rows.column_by_field),
        writer=writer,
    )


def _key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def _plain_fields(selection_set: SelectionSetNode | None) -> list[FieldNode] | None:
    """The fields of a selection set written plainly (no fragments, directives, introspection,
    repeated response keys), or None."""
    if selection_set is None:
        return None
    fields: list[FieldNode] = []
    keys: set[str] = set()
    for selection in selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        key = _key(selection)
        if key in keys or selection.name.value.startswith("__"):
            return None
        keys.add(key)
        fields.append(selection)
    return fields


def _only_field(selection_set: SelectionSetNode | None) -> FieldNode | None:
    fields = _plain_fields(selection_set)
    return fields[0] if fields is not None and len(fields) == 1 else None


def _object(graphql_type: Any) -> GraphQLObjectType | None:
    inner = graphql_type.of_type if isinstance(graphql_type, GraphQLNonNull) else graphql_type
    return inner if isinstance(inner, GraphQLObjectType) else None


def _source(definition: GraphQLField, node: FieldNode) -> str | None:
    """The dict key a field's value is read from, or None: the GraphQL name for a field with no
    resolver (the rows' fields: graphql-core's default resolver), the Python name for a Strawberry
    field without a resolver of its own (the schema's `_default_resolver`)."""
    if definition.resolve is None:
        return node.name.value
    backref = definition.extensions.get(BACKREF)
    if backref is None or backref.base_resolver is not None:
        return None
    return backref.python_name


def _object_plan(node: FieldNode, definition: GraphQLField, source: str) -> _Object | None:
    """The writer of one object field: an object, or a non-null list of non-null objects."""
    graphql_type: Any = definition.type
    non_null = isinstance(graphql_type, GraphQLNonNull)
    if non_null:
        graphql_type = graphql_type.of_type
    many = isinstance(graphql_type, GraphQLList)
    if many:
        item = graphql_type.of_type
        if not (non_null and isinstance(item, GraphQLNonNull)):
            return None
        graphql_type = item.of_type
    # graphql-core asks `is_type_of` of each value it completes as a type that has one
    if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.is_type_of is not None:
        return None
    fields = _plain_fields(node.selection_set)
    if not fields:
        return None
    plans: list[_Leaf | _Object] = []
    for field in fields:
        sub = graphql_type.fields.get(field.name.value)
        key = None if sub is None or field.arguments else _source(sub, field)
        plan = None if key is None or sub is None else _field_plan(field, sub, key)
        if plan is None:
            return None
        plans.append(plan)
    return _Object(_key(node), source, tuple(plans), non_null, many)


def _field_plan(node: FieldNode, definition: GraphQLField, source: str) -> _Leaf | _Object | None:
    graphql_type: Any = definition.type
    non_null = isinstance(graphql_type, GraphQLNonNull)
    inner = graphql_type.of_type if non_null else graphql_type
    if isinstance(inner, GraphQLScalarType):
        return None if node.selection_set else _Leaf(_key(node), source, inner.serialize, non_null)
    return _object_plan(node, definition, source)


def _wanted(rows_node: FieldNode, column_by_field: Mapping[str, str]) -> Wanted:
    """What `reads.wanted_from` finds in this selection (by field name, not response key)."""
    fields = _plain_fields(rows_node.selection_set) or []
    below_nodes = [
        sub.name.value
        for field in fields
        if field.name.value == "nodes"
        for sub in _plain_fields(field.selection_set) or []
    ]
    return wanted([field.name.value for field in fields], below_nodes, column_by_field)


PLAN_CACHE = 512  # documents per schema
_NOT_COMPILED = object()  # a document known not to have the compiled form


class Plans:
    """The plans of one schema by (document text, operation name), a bounded LRU that also
    remembers the documents that do not compile (so each is tried once). Thread-safe."""

    def __init__(self, rows_fields: Mapping[tuple[str, str], RowsField], size: int = PLAN_CACHE) -> None:
        self.rows_fields = rows_fields
        self.size = size
        self._plans: OrderedDict[tuple[str, str | None], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, operation_name: str | None) -> ReadPlan | None:
        with self._lock:
            plan = self._plans.get((text, operation_name))
            if not isinstance(plan, ReadPlan):
                return None
            self._plans.move_to_end((text, operation_name))
        return plan

    def learn(
        self, schema: GraphQLSchema, text: str, operation_name: str | None, document: DocumentNode
    ) -> None:
        """Compile `document` (the text that just ran clean on `schema`), once."""
        key = (text, operation_name)
        with self._lock:
            if key in self._plans:
                return
        plan = compile_read(schema, document, operation_name, self.rows_fields)
        with self._lock:
            self._plans[key] = plan if plan is not None else _NOT_COMPILED
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return sum(isinstance(plan, ReadPlan) for plan in self._plans.values())
