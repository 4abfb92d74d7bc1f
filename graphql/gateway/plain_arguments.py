"""The arguments of the generated product fields as plain data, straight from graphql-core.

graphql-core has coerced and validated every argument (variables and literals alike) against the
field's GraphQL types before a resolver runs. Strawberry then rebuilt them as its input dataclasses
— recursing into every field of each input, all present as null — and the resolvers turned them
straight back into dicts: ~0.6 ms of CPU per request on a three-condition `where` (measured, issue 16).
Here an input object becomes a dict keyed by the Python names Strawberry would give its attributes,
without its null fields; lists, scalars and enum members stay as graphql-core coerced them.

`install` hands a product's rows and aggregate fields to graphql-core with these arguments (like
`schema._fast_row_fields` for row fields); exports convert through `plain_arguments` too
(`arguments.read_arguments`), so GraphQL and exports read arguments one way.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.schema.schema_converter import GraphQLCoreConverter

from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
)

BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF

# GraphQL name -> Python name of each input type's fields (Strawberry's backref on each field);
# the types die with their schema.
_input_names: weakref.WeakKeyDictionary[GraphQLInputObjectType, dict[str, str]] = weakref.WeakKeyDictionary()


def _python_names(input_type: GraphQLInputObjectType) -> dict[str, str]:
    names = _input_names.get(input_type)
    if names is None:
        names = {k: f.extensions[BACKREF].python_name for k, f in input_type.fields.items()}
        _input_names[input_type] = names
    return names


def argument_names(field: GraphQLField) -> dict[str, str]:
    """GraphQL name -> Python name of `field`'s arguments."""
    return {k: a.extensions[BACKREF].python_name for k, a in field.args.items()}


def plain(value: Any, graphql_type: GraphQLInputType) -> Any:
    """`value` as graphql-core coerced it for `graphql_type`, with input objects as dicts keyed by
    Python field names and their null fields left out."""
    if value is None:
        return None
    if isinstance(graphql_type, GraphQLNonNull):
        graphql_type = graphql_type.of_type
    if isinstance(graphql_type, GraphQLList):
        return [plain(item, graphql_type.of_type) for item in value]
    if isinstance(graphql_type, GraphQLInputObjectType):
        names, fields = _python_names(graphql_type), graphql_type.fields
        return {names[k]: plain(v, fields[k].type) for k, v in value.items() if v is not None}
    return value


def plain_arguments(
    field: GraphQLField, raw: dict[str, Any], names: dict[str, str] | None = None
) -> dict[str, Any]:
    """`raw` (graphql-core's coerced arguments of `field`, by GraphQL name) by Python argument name
    (`names`: `argument_names(field)`, computed here when not given)."""
    names = names if names is not None else argument_names(field)
    return {names[k]: plain(v, field.args[k].type) for k, v in raw.items()}


def install(schema: Any, fields: list[tuple[str, str]], info_class: type) -> None:
    """Resolve each (object type, field) of `schema` with its Strawberry resolver called directly
    with plain arguments and a Strawberry `info`. Only for fields without permission classes or
    field extensions (refused otherwise: they would be skipped)."""
    for type_name, field_name in fields:
        owner = schema._schema.type_map[type_name]
        assert isinstance(owner, GraphQLObjectType)
        field = owner.fields[field_name]
        definition = field.extensions[BACKREF]
        if definition.permission_classes or definition.extensions:
            raise TypeError(f"{type_name}.{field_name}: has permission classes or field extensions")
        field.resolve = _resolver(field, definition, info_class)


def _resolver(field: GraphQLField, definition: Any, info_class: type) -> Callable[..., Awaitable[Any]]:
    func, names = definition.base_resolver.wrapped_func, argument_names(field)

    async def resolve(source: Any, info: GraphQLResolveInfo, **raw: Any) -> Any:
        strawberry_info = info_class(_raw_info=info, _field=definition)
        return await func(source, strawberry_info, **plain_arguments(field, raw, names))

    return resolve
