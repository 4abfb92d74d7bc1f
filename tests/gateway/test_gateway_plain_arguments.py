"""`plain_arguments`: graphql-core's coerced arguments as the plain data the product resolvers read
— the same values Strawberry's own conversion gives, keyed by Python names, nulls left out — and
`install` refuses a field whose permission classes or extensions it would skip."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import pytest
import strawberry
from strawberry.permission import BasePermission
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments

from gateway.plain_arguments import install, plain_arguments
from graphql import coerce_input_value


@strawberry.enum
class Direction(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input
class TextFilter:
    eq: str | None = None
    in_: list[str] | None = strawberry.field(default=None, name="in")
    starts_with: str | None = None


@strawberry.input
class Where:
    request_id: TextFilter | None = None
    opened_at: TextFilter | None = strawberry.field(default=None, name="openedAt")
    and_: list[Where] | None = strawberry.field(default=None, name="and")
    not_: Where | None = strawberry.field(default=None, name="not")


@strawberry.input
class Order:
    opened_at: Direction | None = None


@strawberry.type
class Query:
    @strawberry.field
    def rows(
        self, where: Where | None = None, order_by: list[Order] | None = None, first: int | None = None
    ) -> int:
        return 0


SCHEMA = strawberry.Schema(query=Query)
FIELD = SCHEMA._schema.query_type.fields["rows"]

CASES: list[dict[str, Any]] = [
    {},
    {"first": 5},
    {"where": {"requestId": {"eq": "SR-1"}}},
    {"where": {"requestId": {"in": "SR-1", "startsWith": "SR"}}},  # a single value coerced to a list
    {"where": {"and": [{"openedAt": {"eq": "x"}}, {"not": {"requestId": {"eq": "y"}}}]}},
    {"where": {"not": {"and": [{"requestId": {"in": ["a", "b"]}}]}}, "orderBy": [{"openedAt": "DESC"}]},
    {"orderBy": {"openedAt": "ASC"}, "first": 0},
]


def _without_nulls(value: Any) -> Any:
    """Strawberry's conversion (dataclasses with None for absent fields) in plain form."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {k: _without_nulls(v) for k, v in fields.items() if v is not None}
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _coerced(arguments: dict[str, Any]) -> dict[str, Any]:
    def fail(path: Any, invalid: Any, error: Any) -> None:
        raise AssertionError(error)

    return {k: coerce_input_value(v, FIELD.args[k].type, fail) for k, v in arguments.items()}


@pytest.mark.parametrize("arguments", CASES, ids=range(len(CASES)))
def test_plain_arguments_are_strawberrys_conversion_without_nulls(arguments: dict[str, Any]) -> None:
    raw = _coerced(arguments)
    definition = FIELD.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    strawberrys = convert_arguments(
        raw,
        definition.arguments,
        scalar_registry=SCHEMA.schema_converter.scalar_registry,
        config=SCHEMA.config,
    )
    assert plain_arguments(FIELD, raw) == _without_nulls(strawberrys)


def test_enum_members_and_python_names_come_through() -> None:
    raw = _coerced({"where": {"requestId": {"in": "x"}}, "orderBy": [{"openedAt": "DESC"}]})
    assert plain_arguments(FIELD, raw) == {
        "where": {"request_id": {"in_": ["x"]}},
        "order_by": [{"opened_at": Direction.DESC}],
    }


class Nobody(BasePermission):
    message = "no"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class GuardedQuery:
    @strawberry.field(permission_classes=[Nobody])
    def rows(self, first: int | None = None) -> int:
        return 1


def test_install_refuses_a_field_whose_permission_check_it_would_skip() -> None:
    schema = strawberry.Schema(query=GuardedQuery)
    with pytest.raises(TypeError, match="permission classes"):
        install(schema, [("GuardedQuery", "rows")], strawberry.Info)
    assert schema.execute_sync("{ rows }").errors  # the permission still applies
