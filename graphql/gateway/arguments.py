"""A product's read arguments given outside GraphQL (an export's query parameters), validated by
the same code as the GraphQL arguments of its rows field.

`where`, `orderBy` and `asOf` go through graphql-core's input coercion against the field's own
argument types (what a GraphQL variable goes through), the rows field's own conversion to plain
arguments (`plain_arguments`), and the resolver's conversion to a query (`schema.ProductInputs`).
So a text where a number belongs,
`{"in": 5}` on a text column or an object where a value belongs is refused exactly as GraphQL
refuses it (HTTP 400 `BAD_USER_INPUT`, the same message), and `"in": "D3"` is the list `["D3"]`
(GraphQL coerces a single value to a list of one), never a list of characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from graphql.pyutils import inspect, print_path_list

from gateway import http_body
from gateway.errors import GovernedError, bad_input
from gateway.plain_arguments import plain_arguments
from graphql import GraphQLError, GraphQLInputType, coerce_input_value

JSON_ARGUMENTS = ("where", "orderBy")
TEXT_ARGUMENTS = ("asOf",)
MAX_JSON_DEPTH = 32  # the deepest `where` GraphQL accepts (8 levels) nests ~20 JSON levels


@dataclass(frozen=True)
class ReadArguments:
    """The arguments as the resolver receives them: a `PageQuery.where`, `order_by` and `asOf`."""

    where: dict[str, Any] | None
    order_by: list[tuple[str, str]]
    as_of: datetime | None


def _coerce(name: str, value: Any, graphql_type: GraphQLInputType) -> Any:
    def refuse(path: list[str | int], invalid: Any, error: GraphQLError) -> None:
        where = f" at '{name}{print_path_list(path)}'" if path else ""
        raise bad_input(f"`{name}` got invalid value {inspect(invalid)}{where}; {error.message}")

    return coerce_input_value(value, graphql_type, refuse, hide_suggestions=True)


def _json(name: str, text: str) -> Any:
    try:
        return http_body.parse_json(text.encode(), MAX_JSON_DEPTH)
    except GovernedError as exc:
        raise GovernedError(f"`{name}`: {exc}", exc.code, status=exc.status) from None


def read_arguments(schema: Any, product: str, params: Mapping[str, str]) -> ReadArguments:
    """`params` (`where`/`orderBy` as JSON text, `asOf` as an ISO 8601 date-time) for `product`
    in `schema` (a `schema.GatewaySchema`). Raises GovernedError `BAD_USER_INPUT` (HTTP 400)."""
    inputs = schema.product_inputs.get(product)
    if inputs is None:
        raise bad_input("This product has no columns that can be served.")
    department = schema._schema.type_map[inputs.department_type]  # graphql-core's schema
    field = department.fields[inputs.field_name]
    raw: dict[str, Any] = {}
    for name in (*JSON_ARGUMENTS, *TEXT_ARGUMENTS):
        text = params.get(name)
        if text is None or text == "":
            continue
        value = _json(name, text) if name in JSON_ARGUMENTS else text
        raw[name] = _coerce(name, value, field.args[name].type)
    kwargs = plain_arguments(field, raw)
    return ReadArguments(
        where=inputs.where(kwargs.get("where")),
        order_by=inputs.order(kwargs.get("order_by")),
        as_of=kwargs.get("as_of"),
    )
