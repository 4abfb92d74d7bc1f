"""Inline literals (issue 16): a document that differs from a validated one only in its literal values
is checked by ValuesOfCorrectType alone (`gateway.shapes`), and answers exactly as the full
validation and as its variable form would — through real uvicorn HTTP on the module's own home.

Each case names its operation so that it has a shape of its own (an operation name is a Name token,
part of the shape). A request took the shape path when `limits.SHAPES.hits` grew (`CheapLimits`
validated it by its shape) or a compiled plan answered it with its own literals (`compiled.py`:
`ReadPlan.run` given the lexed document).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from strawberry.extensions.query_depth_limiter import create_validator

from gateway import limits
from gateway.compiled import ReadPlan
from gateway.shapes import check_literals, literal_types, shape, shape_invariant
from graphql import (
    GraphQLScalarType,
    GraphQLSchema,
    Lexer,
    Source,
    StringValueNode,
    TokenKind,
    Undefined,
    ValidationRule,
    ValuesOfCorrectTypeRule,
    build_schema,
    specified_rules,
    validate,
    value_from_ast_untyped,
)
from tests.gateway.conftest import Server

ROWS = (
    "query %s%s { publicWorks { serviceRequests(%s) { totalCount nodes { requestId createdAt priority } } } }"
)


def _rows(name: str, arguments: str, variables: str = "") -> str:
    return ROWS % (name, variables, arguments)


def _answer(server: Server, query: str, user: str, variables: dict[str, Any] | None = None) -> Any:
    response = server.post(query, user, variables)
    return response.status_code, response.json()


def _codes(answer: Any) -> tuple[int, list[str]]:
    status, body = answer
    return status, [e["extensions"]["code"] for e in body.get("errors", ())]


_BY_SHAPE: list[bool] = []  # one entry per compiled plan run on a document of its shape: answered


@pytest.fixture(autouse=True)
def _compiled_by_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    run = ReadPlan.run

    async def observed(self: ReadPlan, schema: Any, ctx: Any, variables: Any, lexed: Any = None) -> Any:
        answer = await run(self, schema, ctx, variables, lexed)
        if lexed is not None:
            _BY_SHAPE.append(answer is not None)
        return answer

    monkeypatch.setattr(ReadPlan, "run", observed)


def _shape_hit(server: Server, query: str, user: str) -> Any:
    """The answer to `query`, asserting it was served through a shape validated before: by a
    compiled plan with its literals, or validated by its shape (ValuesOfCorrectType alone)."""
    hits, compiled = limits.SHAPES.hits, len(_BY_SHAPE)
    answer = _answer(server, query, user)
    by_plan = _BY_SHAPE[compiled:] == [True]
    assert by_plan or limits.SHAPES.hits == hits + 1, "expected a shape hit"
    return answer


# (id, user, inline arguments with the values tested, the same with other values of one shape,
#  variable declarations, the arguments with variables, the variables)
CASES = [
    (
        "scalar-literals",
        "alice",
        'where: {district: {eq: "D3"}}, first: 5',
        'where: {district: {eq: "D4"}}, first: 6',
        "($d: String, $n: Int)",
        "where: {district: {eq: $d}}, first: $n",
        {"d": "D3", "n": 5},
    ),
    (
        "datetime-and-order",
        "alice",
        'where: {createdAt: {lt: "2026-01-02T00:00:00"}}, orderBy: [{createdAt: DESC}], first: 3',
        'where: {createdAt: {lt: "2026-01-03T00:00:00"}}, orderBy: [{createdAt: DESC}], first: 4',
        "($t: DateTime, $n: Int)",
        "where: {createdAt: {lt: $t}}, orderBy: [{createdAt: DESC}], first: $n",
        {"t": "2026-01-02T00:00:00", "n": 3},
    ),
    (
        "list-and-nesting",
        "dana",
        "where: {or: [{priority: {in: [1, 2]}}, {not: {priority: {gte: 4}}}]}, first: 7",
        "where: {or: [{priority: {in: [3, 1]}}, {not: {priority: {gte: 2}}}]}, first: 8",
        "($p: [Int!], $g: Int, $n: Int)",
        "where: {or: [{priority: {in: $p}}, {not: {priority: {gte: $g}}}]}, first: $n",
        {"p": [1, 2], "g": 4, "n": 7},
    ),
    (
        "not-a-datetime",
        "alice",
        'where: {createdAt: {lt: "yesterday"}}, first: 3',
        'where: {createdAt: {lt: "2026-01-03T00:00:00"}}, first: 4',
        "($t: DateTime, $n: Int)",
        "where: {createdAt: {lt: $t}}, first: $n",
        {"t": "yesterday", "n": 3},
    ),
    (
        "int-out-of-range",
        "alice",
        "first: 99999999999",
        "first: 5",
        "($n: Int)",
        "first: $n",
        {"n": 99999999999},
    ),
    (
        "masked-column-filter",
        "mallory",
        'where: {requesterName: {eq: "Person 3"}}, first: 3',
        'where: {requesterName: {eq: "Person 4"}}, first: 4',
        "($s: String, $n: Int)",
        "where: {requesterName: {eq: $s}}, first: $n",
        {"s": "Person 3", "n": 3},
    ),
    (
        "negative-first",
        "alice",
        "first: -1",
        "first: 2",
        "($n: Int)",
        "first: $n",
        {"n": -1},
    ),
]


@pytest.mark.parametrize(("user", "tested", "other", "declared", "with_variables", "variables"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_inline_literals_answer_as_full_validation_and_as_variables(
    server: Server,
    user: str,
    tested: str,
    other: str,
    declared: str,
    with_variables: str,
    variables: dict[str, Any],
    request: pytest.FixtureRequest,
) -> None:
    case = request.node.callspec.id.replace("-", "_")
    full = _answer(server, _rows(f"Full_{case}", tested), user)  # a shape never seen: every rule
    warm = _answer(server, _rows(f"Warm_{case}", other), user)
    assert "errors" not in warm[1] or warm[1]["data"] is not None, warm  # the shape passed validation
    hit = _shape_hit(server, _rows(f"Warm_{case}", tested), user)
    assert hit == full  # same status, data, errors (messages, codes, locations, paths), governance
    by_variables = _answer(server, _rows(f"Vars_{case}", with_variables, declared), user, variables)
    assert _codes(hit) == _codes(by_variables)
    assert hit[1].get("data") == by_variables[1].get("data")
    assert hit[1].get("extensions") == by_variables[1].get("extensions")


def test_a_request_with_new_literals_is_served_through_its_shape(server: Server) -> None:
    _answer(server, _rows("Served", "first: 2"), "alice")
    status, body = _shape_hit(server, _rows("Served", "first: 3"), "alice")
    assert status == 200 and len(body["data"]["publicWorks"]["serviceRequests"]["nodes"]) == 3


# -- attacks on a shape validated before: each must be refused ------------------------------------


def _refused(answer: Any, code: str) -> str:
    """The first error's message, asserting its code and that no row was answered."""
    _, body = answer
    assert "nodes" not in json.dumps(body.get("data")), body
    assert body["errors"][0]["extensions"]["code"] == code, body
    return body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("valid", "hostile"),
    [
        ('where: {createdAt: {lt: "2026-01-02T00:00:00"}}', 'where: {createdAt: {lt: "not-a-date"}}'),
        ("first: 5", "first: 2147483648"),  # 2^31: not a GraphQL Int
        ('where: {district: {eq: "D3"}}, first: 5', 'where: {district: {eq: "D3"}}, first: "5"'),
        ("where: {priority: {eq: 1}}", "where: {priority: {eq: 1.5}}"),
        ('where: {district: {in: ["D3"]}}', "where: {district: {in: [3]}}"),
    ],
    ids=["datetime", "int-range", "string-for-int", "float-for-int", "int-for-string-in-list"],
)
def test_a_literal_of_the_wrong_type_is_refused_on_a_known_shape(
    server: Server, valid: str, hostile: str, request: pytest.FixtureRequest
) -> None:
    name = "Typed_" + request.node.callspec.id.replace("-", "_")
    assert "errors" not in _answer(server, _rows(name, valid), "alice")[1]
    message = _refused(_answer(server, _rows(name, hostile), "alice"), "BAD_USER_INPUT")
    assert "Expected value of type" in message or "cannot represent" in message


@pytest.mark.parametrize("hostile", ["SIDEWAYS", '"DESC"', "null"], ids=["unknown-enum", "string", "null"])
def test_an_enum_literal_outside_its_type_is_refused_on_a_known_shape(server: Server, hostile: str) -> None:
    _answer(server, _rows("Ordered", "orderBy: [{createdAt: DESC}], first: 2"), "alice")
    hits = limits.SHAPES.hits
    answer = _answer(server, _rows("Ordered", f"orderBy: [{{createdAt: {hostile}}}], first: 3"), "alice")
    assert limits.SHAPES.hits == hits  # an enum value is part of the shape: validated in full
    _refused(answer, "BAD_USER_INPUT")


def test_equal_arguments_that_become_different_are_refused(server: Server) -> None:
    """OverlappingFieldsCanBeMerged compares argument values: `first: 1` twice merges, `first: 1`
    and `first: 2` under one response key conflict. Equal literals are part of the shape."""
    twice = (
        "query Twice { publicWorks { serviceRequests(first: %d) { totalCount } "
        "serviceRequests(first: %d) { totalCount } } }"
    )
    assert "errors" not in _answer(server, twice % (1, 1), "alice")[1]
    assert "errors" not in _shape_hit(server, twice % (2, 2), "alice")[1]
    message = _refused(_answer(server, twice % (1, 2), "alice"), "BAD_USER_INPUT")
    assert "differing arguments" in message


def _nested_where(levels: int) -> str:
    return "where: " + "{not: " * levels + "{priority: {eq: 1}}" + "}" * levels


@pytest.mark.parametrize(
    ("valid", "hostile"),
    [
        (_nested_where(2), _nested_where(9)),  # query.MAX_WHERE_DEPTH
        (_nested_where(2), _nested_where(70)),  # limits.MAX_NESTING
        ("where: {priority: {in: [1]}}", "where: {priority: {in: [" + ", ".join(["1"] * 1001) + "]}}"),
        ("where: {priority: {in: [1]}}", "where: {priority: {in: [" + ", ".join(["1"] * 2100) + "]}}"),
    ],
    ids=["where-depth", "bracket-nesting", "in-values", "tokens"],
)
def test_a_literal_grown_past_a_limit_is_refused(
    server: Server, valid: str, hostile: str, request: pytest.FixtureRequest
) -> None:
    name = "Grown_" + request.node.callspec.id.replace("-", "_")
    assert "errors" not in _answer(server, _rows(name, valid + ", first: 1"), "dana")[1]
    _refused(_answer(server, _rows(name, hostile + ", first: 1"), "dana"), "LIMIT_EXCEEDED")


def test_a_shape_validated_for_one_caller_is_not_valid_for_another(server: Server) -> None:
    """frank (hr owner) may name hr.salaries; mallory may not discover it: the same shape with
    other literals is refused for her as a field that never existed."""
    salaries = "query Pay { hr { salaries(first: %d) { nodes { employeeId } } } }"
    assert _answer(server, salaries % 1, "frank")[1]["data"]["hr"]["salaries"]["nodes"]
    assert "errors" not in _shape_hit(server, salaries % 2, "frank")[1]
    hits = limits.SHAPES.hits
    for first in (3, 2):  # a text of her own, and frank's very text (parsed already, not validated for her)
        message = _refused(_answer(server, salaries % first, "mallory"), "BAD_USER_INPUT")
        assert limits.SHAPES.hits == hits and "Cannot query field 'hr'" in message


def test_a_flood_of_shapes_keeps_the_cache_bounded(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct shapes evict the least recently used; an evicted shape is validated in full again.
    (`__typename` at the top keeps these documents out of compiled reads, which hold their own.)"""
    flood = "query Flood%s { __typename publicWorks { serviceRequests(first: %d) { nodes { requestId } } } }"
    monkeypatch.setattr(limits, "SHAPES", limits._Results(3))
    _answer(server, flood % ("", 1), "alice")
    for i in range(6):
        assert "errors" not in _answer(server, flood % (i, 1), "alice")[1]
    assert len(limits.SHAPES) == 3
    _, body = _answer(server, flood % ("", 2), "alice")
    assert limits.SHAPES.hits == 0 and len(body["data"]["publicWorks"]["serviceRequests"]["nodes"]) == 2


# -- shapes themselves --------------------------------------------------------------------------


def _shape(text: str) -> bytes:
    lexer = Lexer(Source(text))
    start = lexer.token
    while lexer.advance().kind is not TokenKind.EOF:
        pass
    return shape(start)


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ('{ f(a: 1, b: "x") }', '{ f(a: 2, b: "y") # note\n }', True),
        ("{ f(a: 1, b: 1) }", "{ f(a: 1, b: 2) }", False),  # which literals are equal is shape
        ("{ f(a: 1) }", '{ f(a: "1") }', False),
        ("{ f(a: 1) }", "{ f(a: 1.0) }", False),
        ("{ f(a: A) }", "{ f(a: B) }", False),  # enum values, true, false and null are names
        ("{ f(a: [1]) }", "{ f(a: [1, 1]) }", False),
        ('{ f(a: "\\u0061") }', '{ f(a: "b") }', True),
    ],
)
def test_documents_share_a_shape_only_if_they_differ_in_literal_values_alone(
    one: str, other: str, same: bool
) -> None:
    assert (_shape(one) == _shape(other)) is same


class _ReadsValues(ValidationRule):
    pass


def test_only_rules_known_to_ignore_literal_values_are_answered_per_shape() -> None:
    assert shape_invariant([*specified_rules, create_validator(10, None)])
    assert not shape_invariant([*specified_rules, _ReadsValues])
    assert not shape_invariant([*specified_rules, create_validator(10, lambda _: False)])


# -- the literal check against graphql-core's own rule, on a schema with custom scalars ------------

SDL = """
scalar Date
scalar Json
directive @limit(n: Int) on FIELD
input Range { from: Date, to: Date, n: Int }
type Query { f(a: Int, b: [Int!], s: String, x: Float, d: Date, r: Range, rs: [Range], j: Json): Int }
"""


def _date(node: Any, _variables: Any = None) -> Any:
    if not isinstance(node, StringValueNode):
        return Undefined
    return dt.date.fromisoformat(node.value)  # raises ValueError: "found ...; <error>"


@pytest.fixture(scope="module")
def sdl_schema() -> GraphQLSchema:
    schema = build_schema(SDL)
    date = schema.type_map["Date"]
    json_scalar = schema.type_map["Json"]
    assert isinstance(date, GraphQLScalarType) and isinstance(json_scalar, GraphQLScalarType)
    date.parse_literal = _date  # type: ignore[method-assign]
    json_scalar.parse_literal = lambda node, _v=None: value_from_ast_untyped(node)  # type: ignore[method-assign]
    return schema


@pytest.mark.parametrize(
    ("valid", "tested"),
    [
        ('{ f(a: 1, s: "x", x: 1.5) }', '{ f(a: 99999999999, s: "y", x: 2.5) }'),
        (
            '{ f(d: "2020-01-01", r: {from: "2020-01-02", n: 1}) }',
            '{ f(d: "bad", r: {from: "worse", n: 2}) }',
        ),
        ("{ f(b: [1, 2]) }", "{ f(b: [3, 99999999999]) }"),
        ("{ f(b: 1) }", "{ f(b: 99999999999) }"),  # one value where a list goes: typed `[Int!]`
        ("query Q($v: Int = 1) { f(a: $v) }", "query Q($v: Int = 99999999999) { f(a: $v) }"),
        ("{ f @limit(n: 1) }", "{ f @limit(n: 99999999999) }"),
        (
            '{ f(rs: [{from: "2020-01-01"}, {to: "2020-01-02"}]) }',
            '{ f(rs: [{from: "2020-13-01"}, {to: "x"}]) }',
        ),
        ('{ f(d: "2020-01-01") }', '{ f(d: "2021-02-03") }'),
    ],
)
def test_literals_are_checked_as_values_of_correct_type_checks_them(
    sdl_schema: GraphQLSchema, valid: str, tested: str
) -> None:
    first, second = limits._parse(valid, None), limits._parse(tested, None)
    assert first.shape == second.shape and validate(sdl_schema, first.document) == []
    types = literal_types(sdl_schema, first.document, first.literals)
    assert types is not None
    got = check_literals(second.literals, types)
    expected = validate(sdl_schema, second.document, [ValuesOfCorrectTypeRule])
    assert got is not None and [e.formatted for e in got] == [e.formatted for e in expected]


def test_a_composite_literal_in_a_scalar_place_gets_the_whole_rule(sdl_schema: GraphQLSchema) -> None:
    """A custom scalar parses a list or object literal whole: no per-literal types for that shape."""
    parsed = limits._parse("{ f(j: {a: 1, b: [2]}) }", None)
    assert validate(sdl_schema, parsed.document) == []
    assert literal_types(sdl_schema, parsed.document, parsed.literals) is None
