"""Compiled reads: the common request (one product's rows, `where`/`orderBy`/`first`/`after`/
`asOf`, selecting row columns, `pageInfo`, `totalCount` or `snapshot`) answered without Strawberry's
per-request extensions and graphql-core's field-by-field execution (issue 16, item 2).

A document is compiled once per (schema, document text, operation name) into a `ReadPlan` at the
second clean run of its shape on that schema (of its text, when its shape's plan serves its text
only: compiling costs ~0.8 ms, which a document sent once would pay for nothing), when it has that
form exactly (`compile_read`: one query operation, one department field, one rows field, plain
fields below it: no fragments, directives, repeated response keys or `__typename`). Each later
request of that text on that schema is:

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

Documents that differ only in their literal values (one *shape*, `shapes.py`) share a plan when
every literal of the plan's document stands in the rows field's arguments and the document has at
most `SHAPE_TOKENS` tokens. A request whose text has no plan of its own is lexed, not parsed (on the
event loop up to `LEX_ON_LOOP` characters, in the limits' worker thread above); its literals are
checked by ValuesOfCorrectType against the input types the shape fixes (all the full path's
validation runs for a document of a shape it validated, `limits.py` step 4) and put in the
template's places; its errors are located on its own document, parsed then.

Measured on a quiet machine, same run, before (1733fa3) and after: query (a) of bench/gateway.py,
1M rows, two workers, p50 4.04 -> 3.55 ms over HTTP and 293 -> 338 req/s at 8 clients; one worker
with one DuckDB thread, 4.90 -> 4.28 ms of CPU per request; the same query with its value inlined
went from x1.17 to x1.05 of its variable form, and a document of a shape never seen (nothing is
compiled for it) from 7.17 to 7.33 ms (bench/literals.py).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from graphql.execution.execute import ExecutionContext
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema_converter import GraphQLCoreConverter

from gateway.limits import (
    MAX_TOKENS,
    MAX_VARIABLE_VALUES,
    in_thread,
    parsed_with_shape,
    shape_valid,
    variable_values,
)
from gateway.plain_arguments import argument_names, plain_arguments
from gateway.reads import Wanted, wanted
from gateway.shapes import Lexed, LiteralTypes, check_literals, length, lex, literal_types
from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FloatValueNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    IntValueNode,
    ListValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    located_error,
    parse,
)

BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF
_SERIALIZE_STRING = GraphQLString.serialize

PLAN_CACHE = 128  # documents per schema, and shapes per schema
# Shapes run clean once, and texts run clean once, per schema: each a SHA-256 and a `hash` (the
# operation name's, the text's: a collision only compiles a document one run early).
SEEN = 1024
# Longer documents are never compiled, nor lexed to look for a shape: a plan holds its document's
# nodes and tokens (with the parse cache's copy ~20x the text: ~38 KB for 1.8 KB, measured), and
# the common form is a few hundred bytes.
TEXT_LIMIT = 2048
# A plan serves its shape only if its document has at most this many tokens (comments aside), so
# a text without a plan of its own is lexed only that far: 4 KB of Int tokens took ~11 ms to lex
# whole, and query (a) of bench/gateway.py has ~70 tokens.
SHAPE_TOKENS = 256
LEX_ON_LOOP = 512  # longer texts are lexed in the limits' worker thread, not on the event loop


@dataclass(frozen=True)
class RowsField:
    """A product's rows field as the compiled path calls it: `read(ctx, wanted, **arguments)`
    (arguments by Python name, as `plain_arguments` gives them) returns the connection as the
    resolver does; `column_by_field` maps a row field's GraphQL name to its column."""

    read: Callable[..., Awaitable[Any]]
    column_by_field: Mapping[str, str]


class _Incomplete(Exception):
    """A value the writer does not complete itself (graphql-core completes it instead)."""


def _incomplete() -> Any:
    raise _Incomplete


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
    write_many: Callable[[Any], list[dict[str, Any]]] | None = None  # `_many_writer`, for rows

    def write(self, value: Any) -> Any:
        if value is None:
            if self.non_null:
                raise _Incomplete
            return None
        if self.many:
            if type(value) is not list:
                raise _Incomplete
            if self.write_many is not None:
                return self.write_many(value)
            return [self._one(item) for item in value]
        return self._one(value)

    def _one(self, value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _Incomplete
        get = value.get
        return {field.key: field.write(get(field.source)) for field in self.fields}


@functools.lru_cache(maxsize=PLAN_CACHE)  # one function per selection of rows, whatever the plan
def _many_writer(fields: tuple[_Leaf | _Object, ...]) -> Callable[[Any], list[dict[str, Any]]] | None:
    """`_Object.write` of a list of rows, as one generated function (like `dataclasses` builds
    `__init__`): a page is ~100 rows x ~8 columns, and a method call per cell cost ~0.3 ms of
    event-loop CPU per request. Each nullable leaf is inlined: null stays null, a `str` in a String
    field is its own serialisation, any other value goes through the type's `serialize`, whose
    null or Undefined result raises `_Incomplete` (graphql-core's `complete_leaf_value` refuses
    those). A non-null leaf calls its `_Leaf.write`. None when a field is not a leaf (the generic
    writer serves it). Keys and sources are written with `repr`, so no name can inject code
    (GraphQL names are `[_A-Za-z][_0-9A-Za-z]*` in any case)."""
    if not all(isinstance(field, _Leaf) for field in fields):
        return None
    namespace: dict[str, Any] = {
        "_Incomplete": _Incomplete,
        "_incomplete": _incomplete,
        "Undefined": Undefined,
    }
    cells = []
    for n, field in enumerate(fields):
        assert isinstance(field, _Leaf)
        namespace[f"leaf{n}"], namespace[f"serialize{n}"] = field.write, field.serialize
        get = f"get({field.source!r})"
        if field.non_null:
            cell = f"leaf{n}({get})"
        elif field.serialize is _SERIALIZE_STRING:
            cell = f"(v if (v := {get}) is None or type(v) is str else leaf{n}(v))"
        else:
            cell = (
                f"(None if (v := {get}) is None else "
                f"(_incomplete() if (s := serialize{n}(v)) is None or s is Undefined else s))"
            )
        cells.append(f"{field.key!r}: {cell}")
    source = (
        "def write_many(items):\n"
        "    out = []\n"
        "    for item in items:\n"
        "        if type(item) is not dict:\n"
        "            raise _Incomplete\n"
        "        get = item.get\n"
        f"        out.append({{{', '.join(cells)}}})\n"
        "    return out\n"
    )
    exec(compile(source, "<compiled rows writer>", "exec"), namespace)  # generated from the plan above
    return namespace["write_many"]


@dataclass(frozen=True)
class ReadPlan:
    """One compiled document: `run` answers a request of it, or returns None (full path).

    `literals` are the template's Int, Float and String value nodes in token order when every one
    of them stands in the rows field's arguments and the shape fixes each one's input type
    (`literal_types`): then a document of the same shape is answered by this plan with its own
    literals put in their places (`run` with `lexed`)."""

    operation: OperationDefinitionNode
    operation_name: str | None
    department_key: str
    department_type: GraphQLObjectType
    rows_nodes: tuple[FieldNode, ...]
    rows_definition: GraphQLField
    rows: RowsField
    argument_names: dict[str, str]
    wanted: Wanted
    writer: _Object
    literals: tuple[ValueNode, ...] | None = None
    literal_types: LiteralTypes | None = None

    async def run(
        self, schema: GraphQLSchema, ctx: Any, variables: Any, lexed: Lexed | None = None
    ) -> tuple[Any, list[GraphQLError]] | None:
        """(data, errors) of one request, or None when its variables, literals or arguments have
        errors (the caller runs the full path, which reports them): nothing is read before that.
        `lexed`: the request's document when it is not this plan's text but of its shape."""
        raw = self._arguments(schema, variables, lexed)
        if raw is None:
            return None
        path = Path(None, self.department_key, "Query").add_key(self.writer.key, self.department_type.name)
        executor: ExecutionContext | None = None
        try:
            value = await self.rows.read(
                ctx, self.wanted, **plain_arguments(self.rows_definition, raw, self.argument_names)
            )
        except Exception as exc:
            plan = await self._located(schema, lexed)
            executor = plan._executor(schema, ctx, variables)
            error = located_error(exc, list(plan.rows_nodes), path.as_list())
            executor.handle_field_error(error, self.rows_definition.type, path)
            out = None
        else:
            try:
                out = self.writer.write(value)
            except Exception:  # graphql-core completes it and locates the error
                plan = await self._located(schema, lexed)
                executor = plan._executor(schema, ctx, variables)
                out = plan._complete(executor, value, path)
        data = {self.department_key: {self.writer.key: out}}
        return data, list(executor.collected_errors.errors) if executor is not None else []

    def _arguments(self, schema: GraphQLSchema, variables: Any, lexed: Lexed | None) -> dict[str, Any] | None:
        """The rows field's argument values, or None on any error (variables, literals)."""
        if variables is not None and type(variables) is not dict:
            return None
        if variables and variable_values(variables) > MAX_VARIABLE_VALUES:
            return None
        coerced = get_variable_values(schema, self.operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return None
        rows_node = self.rows_nodes[0] if lexed is None else self._with_literals(lexed)
        if rows_node is None:
            return None
        try:
            return get_argument_values(self.rows_definition, rows_node, coerced)
        except GraphQLError:
            return None

    def _with_literals(self, lexed: Lexed) -> FieldNode | None:
        """The rows field node with `lexed`'s literals in place of the template's, or None when
        they fail ValuesOfCorrectType (what the full validation of that document would say)."""
        if self.literals is None or self.literal_types is None:
            return None
        errors = check_literals(lexed.literals, self.literal_types)
        if errors is None or errors:
            return None
        new = {id(old): node for old, node in zip(self.literals, lexed.literals, strict=True)}
        node = self.rows_nodes[0]
        return FieldNode(
            alias=node.alias,
            name=node.name,
            arguments=tuple(_substituted(argument, new) for argument in node.arguments),
            directives=node.directives,
            selection_set=node.selection_set,
            loc=node.loc,
        )

    async def _located(self, schema: GraphQLSchema, lexed: Lexed | None) -> ReadPlan:
        """The plan whose nodes carry the request's own locations, for its errors: this one, or
        for a document of its shape, the plan of that document parsed (errors only; in the
        limits' worker thread, as the full path parses)."""
        if lexed is None:
            return self
        rows = {(self.department_type.name, self.rows_nodes[0].name.value): self.rows}
        document = await in_thread(parse, lexed.source)
        plan = compile_read(schema, document, self.operation_name, rows)
        assert plan is not None  # the same tokens as this plan's document, literals aside
        return plan

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


def _substituted(node: Any, new: Mapping[int, ValueNode]) -> Any:
    """`node` (an argument or value node) with the value nodes whose ids are in `new` replaced;
    the parts holding none are shared, not copied."""
    replacement = new.get(id(node))
    if replacement is not None:
        return replacement
    if isinstance(node, (ArgumentNode, ObjectFieldNode)):
        value = _substituted(node.value, new)
        return node if value is node.value else type(node)(name=node.name, value=value, loc=node.loc)
    if isinstance(node, ObjectValueNode):
        fields = tuple(_substituted(field, new) for field in node.fields)
        return ObjectValueNode(fields=fields, loc=node.loc)
    if isinstance(node, ListValueNode):
        return ListValueNode(values=tuple(_substituted(value, new) for value in node.values), loc=node.loc)
    return node


def _value_nodes(node: Any) -> Iterator[ValueNode]:
    """The Int, Float and String value nodes under an argument or value node, in document order."""
    if isinstance(node, (ArgumentNode, ObjectFieldNode)):
        yield from _value_nodes(node.value)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            yield from _value_nodes(field)
    elif isinstance(node, ListValueNode):
        for value in node.values:
            yield from _value_nodes(value)
    elif isinstance(node, (IntValueNode, FloatValueNode, StringValueNode)):
        yield node


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
        operation_name=operation_name,
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
    written = tuple(plans)
    return _Object(_key(node), source, written, non_null, many, _many_writer(written) if many else None)


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


class Plans:
    """The plans of one schema: by (document text, operation name), and by (shape, operation
    name) for plans that take other literals (`ReadPlan.literals`). Bounded LRUs; the shapes run
    clean once, and the texts that do not compile, are remembered apart (neither can push plans
    out). Thread-safe."""

    def __init__(self, rows_fields: Mapping[tuple[str, str], RowsField], size: int = PLAN_CACHE) -> None:
        self.rows_fields = rows_fields
        self.size = size
        self._by_text: OrderedDict[tuple[str, str | None], ReadPlan] = OrderedDict()
        self._by_shape: OrderedDict[tuple[bytes, str | None], ReadPlan] = OrderedDict()
        self._not_compiled: OrderedDict[tuple[str, str | None], None] = OrderedDict()
        # shape (with the operation name's hash) -> True once it compiled to a plan serving its
        # text only, or to none: each other text of it is then compiled at its own second run
        self._seen: OrderedDict[tuple[bytes, int], bool] = OrderedDict()
        self._seen_texts: OrderedDict[int, None] = OrderedDict()  # hashes of (text, name) run clean
        self._lock = threading.Lock()

    async def find(self, text: str, operation_name: str | None) -> tuple[ReadPlan, Lexed | None] | None:
        """The plan for this text, else the plan for its shape with the text's literals (the text
        lexed on the event loop up to `LEX_ON_LOOP` characters, ~0.5 ms at worst, in the limits'
        worker thread above: a hostile text holds the loop no longer than parsing did); None if
        there is neither. Call on the event loop."""
        with self._lock:
            plan = _lookup(self._by_text, (text, operation_name))
            if plan is not None:
                return plan, None
            # A text that ran clean and did not compile has no compiled form, so no shape of one:
            # it is not lexed again (a repeated query outside the form pays no lex per request).
            if not self._by_shape or len(text) > TEXT_LIMIT or (text, operation_name) in self._not_compiled:
                return None
        bounds = (MAX_TOKENS, SHAPE_TOKENS)  # the parser's limit (schema.py's MaxTokensLimiter)
        lexed = lex(text, *bounds) if len(text) <= LEX_ON_LOOP else await in_thread(lex, text, *bounds)
        if lexed is None:
            return None
        with self._lock:
            plan = _lookup(self._by_shape, (lexed.shape, operation_name))
        return (plan, lexed) if plan is not None else None

    def learn(self, schema: GraphQLSchema, text: str, operation_name: str | None) -> None:
        """Compile the document of `text` (which just ran clean on `schema`), once, from the second
        clean run of its shape on: a one-off document pays nothing (compiling costs ~0.8 ms: the
        writer's code and the shape's literal types), and a flood of one-off documents cannot push
        plans in use out. A plan whose literals all stand in the rows field's arguments serves its
        whole shape too; a shape whose plan serves its text only (or that has none) is remembered,
        and each other text of it is compiled at that text's own second clean run (those texts,
        each sent once, are one-off documents too)."""
        key = (text, operation_name)
        parsed = parsed_with_shape(text) if len(text) <= TEXT_LIMIT else None
        with self._lock:
            if parsed is None or key in self._by_text or key in self._not_compiled:
                return
            seen_key, text_key = (parsed[1], hash(operation_name)), hash(key)
            text_only = self._seen.get(seen_key)
            if text_only is None or (text_only and text_key not in self._seen_texts):
                if text_only is None:
                    _store(self._seen, seen_key, False, SEEN)
                _store(self._seen_texts, text_key, None, SEEN)
                return
        document, document_shape, literals = parsed
        plan = compile_read(schema, document, operation_name, self.rows_fields)
        if plan is not None and shape_valid(schema, document_shape):
            plan = _with_shape(plan, schema, document, literals)
        with self._lock:
            if plan is None or plan.literals is None:
                _store(self._seen, seen_key, True, SEEN)
            if plan is None:
                _store(self._not_compiled, key, None, self.size)
                return
            _store(self._by_text, key, plan, self.size)
            if plan.literals is not None:
                _store(self._by_shape, (document_shape, operation_name), plan, self.size)


def _with_shape(
    plan: ReadPlan, schema: GraphQLSchema, document: DocumentNode, literals: tuple[ValueNode, ...]
) -> ReadPlan:
    """`plan` able to take the literals of other documents of its shape, when all its literals
    are in the rows field's arguments, their input types are fixed by the shape, and the document
    has at most SHAPE_TOKENS tokens."""
    in_arguments = [id(node) for argument in plan.rows_nodes[0].arguments for node in _value_nodes(argument)]
    if in_arguments != [id(node) for node in literals] or document.loc is None:
        return plan
    if length(document.loc.start_token) > SHAPE_TOKENS:
        return plan
    types = literal_types(schema, document, literals)
    return plan if types is None else replace(plan, literals=literals, literal_types=types)


def _lookup(table: OrderedDict[Any, ReadPlan], key: Any) -> ReadPlan | None:
    plan = table.get(key)
    if plan is not None:
        table.move_to_end(key)
    return plan


def _store(table: OrderedDict[Any, Any], key: Any, value: Any, size: int) -> None:
    table[key] = value
    while len(table) > size:
        table.popitem(last=False)
