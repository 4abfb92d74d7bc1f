"""What a field's selection asks for, collected as graphql-core's executor collects it (GraphQL spec
§6.3.2 CollectFields): fragments with or without a type condition, `@skip` and `@include` applied,
and a field written more than once under one response key merged into one (§5.3.2).

Strawberry's `info.selected_fields` raised on an inline fragment without a type condition
(`nodes { ... @include(if: $x) { district } }`: HTTP 200 with an internal error) and keeps
selections that `@skip`/`@include` remove (their columns were read and logged, never returned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql.execution.collect_fields import collect_sub_fields
from graphql.execution.values import get_argument_values

from graphql import FieldNode, GraphQLObjectType, GraphQLResolveInfo, get_named_type


@dataclass(frozen=True)
class Selected:
    """One response key under a field: the field it names, its arguments and its own selection."""

    key: str  # the response key (alias or field name)
    name: str  # the field name
    arguments: dict[str, Any]  # coerced, variables applied (enum values as their internal values)
    nodes: tuple[FieldNode, ...]  # every place it was written (merged)
    type: GraphQLObjectType | None  # the object type it returns, if any (for its own selection)


def _collect(raw: GraphQLResolveInfo, parent: Any, nodes: Any) -> list[Selected]:
    if not isinstance(parent, GraphQLObjectType):
        return []
    out = []
    fields = collect_sub_fields(raw.schema, raw.fragments, raw.variable_values, parent, list(nodes))
    for key, written in fields.items():
        name = written[0].name.value
        definition = parent.fields.get(name)  # None for __typename
        arguments = get_argument_values(definition, written[0], raw.variable_values) if definition else {}
        named = get_named_type(definition.type) if definition else None
        out.append(
            Selected(
                key, name, arguments, tuple(written), named if isinstance(named, GraphQLObjectType) else None
            )
        )
    return out


def selected(info: Any) -> list[Selected]:
    """The response keys selected under the field being resolved (`info`: Strawberry's Info)."""
    raw: GraphQLResolveInfo = info._raw_info
    return _collect(raw, get_named_type(raw.return_type), raw.field_nodes)


def below(info: Any, selection: Selected) -> list[Selected]:
    """The response keys selected under `selection` (one of `selected(info)` or of `below`)."""
    return _collect(info._raw_info, selection.type, selection.nodes)
