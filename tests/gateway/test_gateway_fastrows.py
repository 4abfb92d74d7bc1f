"""The fast completion of product rows answers exactly as graphql-core's own completion: the same
data and, for values a row's scalars cannot serialise or a missing non-null item, the same errors
at the same paths (the fast path gives way to the normal one item by item).

Real graphql-core execution on a schema shaped like the gateway's (a connection whose `nodes` is a
non-null list of rows of nullable scalars), once with `FastRowsExecutionContext` and once without.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.fastrows import execution_context_for
from graphql import (
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
)

ROW = GraphQLObjectType(
    "ServiceRequestsRow",
    {
        "requestId": GraphQLField(GraphQLString),
        "priority": GraphQLField(GraphQLInt),
        "hours": GraphQLField(GraphQLFloat),
    },
)
PAGE = GraphQLObjectType(
    "ServiceRequestsPage", {"nodes": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(ROW))))}
)
SCHEMA = GraphQLSchema(
    GraphQLObjectType("Query", {"page": GraphQLField(PAGE, resolve=lambda root, info: root)})
)
FAST = execution_context_for(["ServiceRequestsRow"])

GOOD = [{"requestId": f"SR-{i}", "priority": i, "hours": i / 2} for i in range(50)] + [
    {"requestId": None, "priority": None, "hours": None}
]
QUERIES = [
    "{ page { nodes { requestId priority hours } } }",
    "{ page { nodes { __typename id: requestId p: priority requestId } } }",
    "{ page { nodes { hours } n2: nodes { priority } } }",
    "{ page { nodes { requestId ... on ServiceRequestsRow { priority } } } }",  # not plain: normal path
    "{ page { nodes { requestId @include(if: false) priority } } }",
]
BAD = [
    [*GOOD[:3], {"requestId": "SR-x", "priority": "not a number", "hours": 1.0}, *GOOD[3:6]],
    [*GOOD[:2], None, *GOOD[2:4]],  # a missing row in a list of non-null rows
    [*GOOD[:2], {"requestId": "SR-y", "priority": 1, "hours": float("nan")}],
    [*GOOD[:2], "not a row"],
]


def _run(query: str, nodes: Any, fast: bool) -> tuple[Any, list[Any]]:
    kwargs = {"execution_context_class": FAST} if fast else {}
    result = execute(SCHEMA, parse(query), root_value={"nodes": nodes}, **kwargs)
    return result.data, [error.formatted for error in result.errors or ()]


@pytest.mark.parametrize("query", QUERIES)
def test_rows_complete_exactly_as_graphql_core_completes_them(query: str) -> None:
    assert _run(query, GOOD, fast=True) == _run(query, GOOD, fast=False)


@pytest.mark.parametrize("nodes", BAD, ids=["unserialisable", "missing-row", "nan", "not-a-dict"])
@pytest.mark.parametrize("query", QUERIES[:3])
def test_a_bad_row_gives_graphql_cores_own_errors_and_paths(query: str, nodes: list[Any]) -> None:
    assert _run(query, nodes, fast=True) == _run(query, nodes, fast=False)


def test_the_bad_rows_are_errors_located_at_the_item() -> None:
    """The cases above do reach graphql-core's error path (a fast path that swallowed them would
    differ): an Int that is not one, at its row and field; a missing non-null row nulls the page."""
    data, errors = _run(QUERIES[0], BAD[0], fast=True)
    assert data == {"page": {"nodes": [*BAD[0][:3], {**BAD[0][3], "priority": None}, *BAD[0][4:]]}}
    assert [e["path"] for e in errors] == [["page", "nodes", 3, "priority"]]
    data, errors = _run(QUERIES[0], BAD[1], fast=True)
    assert data == {"page": None} and [e["path"] for e in errors] == [["page", "nodes", 2]]
