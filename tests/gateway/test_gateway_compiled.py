"""Compiled reads (`gateway/compiled.py`) answer exactly as the full path does.

Each document runs twice on one in-process gateway with the same variables: the first run takes
Strawberry's execution (and compiles the document if it ran clean), the second the compiled plan.
The two answers and the two access-log records must be equal, errors included: a read refused by
the product (limits, bad cursors, masked columns in `where`), variables that fail coercion (the plan
hands those back to the full path), and a value its scalar cannot serialise (graphql-core completes
it and locates the error). Documents outside the compiled form never get a plan.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import orjson
import pytest
from graphql.language.lexer import Lexer

from gateway import compiled as compiled_module
from gateway import shapes
from gateway.app import Gateway
from gateway.auth import Principal
from gateway.compiled import LEX_ON_LOOP, TEXT_LIMIT, ReadPlan
from gateway.errors import GovernedError
from gateway.limits import MAX_NESTING, nesting
from gateway.view import GatewayView
from graphql import Source, TokenKind
from meshcore.accesslog import AccessLog, decode_row
from meshcore.catalog import Catalog
from meshcore.products import ColumnSpec, ProductSpec
from meshcore.settings import Settings
from meshcore.store import dispose, get_engine

pytestmark = pytest.mark.timeout(300)

ROWS = """
query Rows($where: PublicWorksServiceRequestsWhere, $first: Int, $after: String) {
  publicWorks {
    serviceRequests(where: $where, orderBy: [{createdAt: DESC}], first: $first, after: $after) {
      totalCount
      nodes { requestId createdAt closedOn district priority responseHours requesterName address }
      pageInfo { hasNextPage endCursor }
      snapshot { id publishedAt rowCount }
    }
  }
}"""
ALIASED = """
query Aliased($first: Int) {
  pw: publicWorks {
    sr: serviceRequests(first: $first, where: {category: {eq: "pothole"}}) {
      rows: nodes { id: requestId name: requesterName id2: district }
      page: pageInfo { more: hasNextPage }
    }
  }
}"""
PER_REQUEST = {"seq", "ts", "hash", "prev_hash", "request_id", "latency_ms", "client"}
NAN_READINGS = ProductSpec(
    department="environment",
    product="nan_readings",
    classification="public",
    owner="erin@city.example",
    description="Readings, one of them not a number.",
    key="reading_id",
    unscoped="measured city-wide: stations do not belong to one district",
    columns=(ColumnSpec("reading_id", "integer", "Reading id"), ColumnSpec("pm25", "double", "PM2.5")),
)


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory, gateway_home: Any, publish_product: Any
) -> Iterator[Settings]:
    path = tmp_path_factory.mktemp("compiled")
    url = f"sqlite:///{path / 'metadata.db'}"
    settings = gateway_home(path, url)
    publish_product(
        settings,
        NAN_READINGS,
        "SELECT CAST(i AS INTEGER) AS reading_id, CASE WHEN i = 1 THEN 'nan'::DOUBLE ELSE i END AS pm25 "
        "FROM range(3) t(i)",
    )
    yield settings
    dispose(url)


@pytest.fixture
def gateway(home: Settings) -> Iterator[Gateway]:
    gw = Gateway(home)
    yield gw
    gw.close()


def _observe(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[bool]:
    """One entry per call of the coroutine method `owner.name`: whether it answered (not None)."""
    answered: list[bool] = []
    method = getattr(owner, name)

    async def observed(self: Any, *args: Any) -> Any:
        answer = await method(self, *args)
        answered.append(answer is not None)
        return answer

    monkeypatch.setattr(owner, name, observed)
    return answered


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per request given a plan: True when the plan answered it."""
    return _observe(monkeypatch, ReadPlan, "run")


def _run(gateway: Gateway, user: str, query: str, variables: dict[str, Any] | None, rid: str) -> Any:
    principal = Principal(subject=user, claims={"sub": user})
    return asyncio.run(gateway.execute(principal, query, variables, request_id=rid, client="10.0.0.9"))


def _record(settings: Settings, request_id: str) -> list[dict[str, Any]]:
    rows = [
        decode_row(r)
        for r in AccessLog(get_engine(settings.metadata_url)).rows()
        if r["request_id"] == request_id
    ]
    return [{k: v for k, v in row.items() if k not in PER_REQUEST} for row in rows]


def _without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """The body with each internal error's `requestId` (the key to that request's log) left out."""
    errors = [
        {**e, "extensions": {k: v for k, v in e["extensions"].items() if k != "requestId"}}
        for e in body.get("errors", ())
    ]
    return {**body, "errors": errors} if errors else body


def _twice(home: Settings, gateway: Gateway, user: str, query: str, variables: Any, name: str) -> Any:
    """The answer of the full path, after checking the runs after it equal it: a shape is compiled
    at its second clean run, and the plan answers the third."""
    first = _run(gateway, user, query, variables, f"{name}-1")
    for run in (2, 3):
        again = _run(gateway, user, query, variables, f"{name}-{run}")
        assert _without_request_id(again) == _without_request_id(first)
        assert _record(home, f"{name}-{run}") == _record(home, f"{name}-1") != []
    return first


@pytest.mark.parametrize("user", ["alice", "bob", "dana"])
def test_a_page_with_masks_and_row_scope_is_answered_alike(
    home: Settings, gateway: Gateway, compiled: list[bool], user: str
) -> None:
    variables = {"where": {"priority": {"gte": 2}}, "first": 4}
    body = _twice(home, gateway, user, ROWS, variables, f"page-{user}")
    assert compiled == [True]
    connection = body["data"]["publicWorks"]["serviceRequests"]
    assert len(connection["nodes"]) == 4 and connection["pageInfo"]["hasNextPage"] is True
    assert "governance" in body["extensions"]
    after = {**variables, "after": connection["pageInfo"]["endCursor"]}
    next_page = _twice(home, gateway, user, ROWS, after, f"next-{user}")
    assert compiled == [True] * 4  # the first page's plan, also for its next page
    next_ids = {n["requestId"] for n in next_page["data"]["publicWorks"]["serviceRequests"]["nodes"]}
    assert next_ids and not next_ids & {n["requestId"] for n in connection["nodes"]}


def test_aliases_and_literals_are_answered_alike(
    home: Settings, gateway: Gateway, compiled: list[bool]
) -> None:
    body = _twice(home, gateway, "bob", ALIASED, {"first": 3}, "aliased")
    assert compiled == [True]
    rows = body["data"]["pw"]["sr"]["rows"]
    assert (
        len(rows) == 3 and set(rows[0]) == {"id", "name", "id2"} and body["data"]["pw"]["sr"]["page"]["more"]
    )


@pytest.mark.parametrize(
    ("variables", "code", "by_plan"),
    [
        ({"first": 5000}, "LIMIT_EXCEEDED", True),  # refused by the read
        ({"first": -1}, "BAD_USER_INPUT", True),
        ({"after": "not-a-cursor"}, "BAD_USER_INPUT", True),
        ({"where": {"requesterName": {"eq": "Person 7"}}}, "BAD_USER_INPUT", True),  # masked for bob
        ({"first": "five"}, "BAD_USER_INPUT", False),  # fails coercion: the plan hands it back
        ({"where": {"nope": {"eq": 1}}}, "BAD_USER_INPUT", False),
    ],
)
def test_errors_are_the_full_paths_errors(
    home: Settings,
    gateway: Gateway,
    compiled: list[bool],
    variables: dict[str, Any],
    code: str,
    by_plan: bool,
) -> None:
    _twice(home, gateway, "bob", ROWS, {"first": 1}, f"clean-{code}-{sorted(variables)}")  # compiles it
    body = _twice(home, gateway, "bob", ROWS, variables, f"error-{code}-{sorted(variables)}")
    assert compiled == [True, by_plan, by_plan, by_plan]
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


REQUIRED = """
query Required($first: Int!, $where: PublicWorksServiceRequestsWhere) {
  publicWorks { serviceRequests(first: $first, where: $where) { totalCount nodes { requestId district } } }
}"""
NAN_REQUIRED = (
    "query N($first: Int!) { environment { nanReadings(first: $first) { nodes { readingId pm25 } } } }"
)


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        (REQUIRED, {"first": 5000}, "LIMIT_EXCEEDED"),  # refused by the read
        (REQUIRED, {"first": 1, "where": {"requesterName": {"eq": "Person 7"}}}, "BAD_USER_INPUT"),
        (NAN_REQUIRED, {"first": 3}, "INTERNAL_SERVER_ERROR"),  # completed again by graphql-core
    ],
    ids=["limit", "masked-filter", "unserialisable"],
)
def test_errors_of_an_operation_with_a_required_variable_are_the_full_paths_errors(
    home: Settings,
    gateway: Gateway,
    compiled: list[bool],
    query: str,
    variables: dict[str, Any],
    code: str,
) -> None:
    """A non-null variable without a default (`$first: Int!`, the usual way to write one) must not
    turn a field error of the plan into an internal failure of the whole request."""
    name = f"required-{code}"
    _twice(home, gateway, "bob", query, {"first": 1}, f"{name}-clean")  # compiles it
    body = _twice(home, gateway, "bob", query, variables, name)
    assert compiled == [True] * 4
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]
    assert body["data"] is not None


def test_coercion_errors_take_the_full_path(home: Settings, gateway: Gateway, compiled: list[bool]) -> None:
    _twice(home, gateway, "bob", ROWS, {"first": 1}, "coerce-clean")
    body = _run(gateway, "bob", ROWS, {"first": "five"}, "coerce-bad")
    assert compiled[-1] is False  # handed back before any read
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_value_its_scalar_cannot_serialise_is_located_by_graphql_core(
    home: Settings, gateway: Gateway, compiled: list[bool]
) -> None:
    query = "query N($first: Int) { environment { nanReadings(first: $first) { nodes { readingId pm25 } } } }"
    clean = _twice(home, gateway, "bob", query, {"first": 1}, "nan-clean")
    assert clean["data"]["environment"]["nanReadings"]["nodes"] == [{"readingId": 0, "pm25": 0.0}]
    body = _twice(home, gateway, "bob", query, {"first": 3}, "nan")
    assert compiled == [True] * 4
    nodes = body["data"]["environment"]["nanReadings"]["nodes"]
    assert {n["readingId"]: n["pm25"] for n in nodes} == {0: 0.0, 1: None, 2: 2.0}
    [error] = body["errors"]  # the value is the store's fault, not the caller's: masked
    assert error["path"] == ["environment", "nanReadings", "nodes", 1, "pm25"]
    assert (error["message"], error["extensions"]["code"]) == ("Internal error.", "INTERNAL_SERVER_ERROR")
    assert error["extensions"]["requestId"] == "nan-1"


@pytest.mark.parametrize(
    "query",
    [
        "{ publicWorks { serviceRequests(first: 1) { nodes { requestId } } } me { user } }",
        "{ publicWorks { serviceRequests(first: 1) { nodes { requestId __typename } } } }",
        "{ publicWorks { serviceRequests(first: 1) { nodes { ...R } } } } "
        "fragment R on PublicWorksServiceRequestsRow { requestId }",
        "query Q($s: Boolean!) { publicWorks { serviceRequests(first: 1) { "
        "nodes { requestId @include(if: $s) } } } }",
        "{ publicWorks { serviceRequestsAggregate { groups { count } } } }",
        "{ publicWorks { serviceRequests(first: 1) { nodes { requestId } nodes { district } } } }",
    ],
)
def test_documents_outside_the_compiled_form_get_no_plan(
    home: Settings, gateway: Gateway, compiled: list[bool], query: str
) -> None:
    variables = {"s": True} if "$s" in query else None
    first = _run(gateway, "bob", query, variables, "outside-1")
    assert "errors" not in first, first
    for run in (2, 3):  # past the second clean run, when a document in the form is compiled
        assert _run(gateway, "bob", query, variables, f"outside-{run}") == first
    assert compiled == []


PLAIN = "application/json"
NOT_PLAIN = "application/json; charset=utf-8"  # Strawberry's own HTTP layer answers this one


@pytest.fixture
def plain_answers(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per request offered to `GatewayView.answer_plain`: True when it answered."""
    return _observe(monkeypatch, GatewayView, "answer_plain")


@pytest.mark.parametrize(
    ("payload", "plain"),
    [
        ({"query": ROWS, "variables": {"first": 2}}, True),
        ({"query": ROWS, "variables": {"first": 2}, "operationName": "Rows"}, True),
        ({"query": ROWS, "variables": {"first": 2}, "operationName": "Other"}, False),  # run: 400
        ({"query": ROWS, "variables": {"first": "two"}}, True),
        ({"query": "{ publicWorks { nope } }"}, True),
        ({"query": "{ me { user } }", "variables": None, "operationName": None}, True),
        ({"query": 'mutation { requestAccess(product: "x", reason: "y") { id } }'}, True),
        ({"query": "subscription { x }"}, True),  # a validation error: no subscriptions
        ({"query": ROWS, "extensions": {"persistedQuery": {}}}, False),
        ({"query": None}, False),
        ({"query": ROWS, "variables": [1]}, False),
        ({"query": ROWS, "operationName": 7}, False),
        ({"query": ROWS, "other": 1}, False),
    ],
)
def test_a_plain_json_post_gets_strawberrys_answer(
    server: Any, plain_answers: list[bool], payload: dict[str, Any], plain: bool
) -> None:
    token = f"Bearer {server.token('bob')}"
    answers = [
        server.client.post(
            "/graphql", content=orjson.dumps(payload), headers={"Authorization": token, "Content-Type": kind}
        )
        for kind in (PLAIN, NOT_PLAIN)
    ]
    assert plain_answers == [plain, False] if plain else plain_answers[:1] == [False]
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].headers["content-type"] == answers[1].headers["content-type"]
    if answers[0].headers["content-type"] == PLAIN:
        assert _without_request_id(answers[0].json()) == _without_request_id(answers[1].json())
    else:
        assert answers[0].text == answers[1].text


SHAPED = (
    "{ publicWorks { serviceRequests(where: {district: {in: [%s]}}, first: %s) "
    "{ nodes { requestId district } } } }"
)
NAN = "{ environment { nanReadings(first: %s) { nodes { readingId pm25 } } } }"
FLOATS = (
    "{ publicWorks { serviceRequests(where: {responseHours: {gte: %s}}, first: %s) "
    "{ nodes { requestId responseHours } } } }"
)
PAGED = (
    "{ publicWorks { serviceRequests(asOf: %s, after: %s, first: 1) "
    "{ nodes { requestId } pageInfo { endCursor } } } }"
)


@pytest.mark.parametrize(
    ("learned", "asked", "user", "tried"),
    [
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D4"', "3"), "alice", [True]),
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D4"', "3"), "dana", [True]),  # her row scope: D3 only
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D30"', "5000"), "alice", [True]),  # refused by the read
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D3"', "99999999999"), "alice", [False]),  # not an Int
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D3"', '"2"'), "alice", []),  # a String token: another shape
        (NAN % "1", NAN % "10", "bob", [True]),  # a value graphql-core locates, after a longer literal
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D4"', "3") + "\n#" + "x" * LEX_ON_LOOP, "alice", [True]),
        (SHAPED % ('"D3"', "2"), SHAPED % ('"D4"', "3") + "\n#" + "x" * TEXT_LIMIT, "alice", []),
        (SHAPED % ('"D3"', "2"), SHAPED % ('"' + "\u00e9\U0001f600" * 900 + '"', "2"), "alice", [True]),
        (SHAPED % ('"D3"', "2"), SHAPED % ('"\\uD83D\\uDE00 # { ["', "2"), "alice", [True]),  # escapes
        (SHAPED % ('"D3"', "2"), SHAPED % ('"""\n    D3\n  """', "2"), "alice", []),  # a block string
        (SHAPED % ('"""\tD3"""', "2"), SHAPED % ('"""\n    D3\n  """', "2"), "alice", [True]),
        (FLOATS % ("1.5", "2"), FLOATS % ("1e0", "-0"), "bob", [True]),  # Float tokens, `-0` an Int
        (
            FLOATS % ("1.5", "2"),
            FLOATS % ("1e400", "2"),
            "bob",
            [True],
        ),  # inf (Python float): no row reaches it
        (FLOATS % ("1.5", "2"), FLOATS % ("2", "2"), "bob", []),  # an Int token: another shape
        # comments count toward the parser's token limit (graphql-core 3.2.14): the full path refuses
        (NAN % "1", "#\n" * 1990 + NAN % "2", "bob", []),
        # `\\"""` in a block string: an escaped `"""` after a backslash (GraphQL spec §2.9.4), so the
        # brackets after it are the string's, not nesting
        (SHAPED % ('"""D3"""', "2"), SHAPED % ('"""D\\\\"""' + "[" * 64 + '"""', "2"), "alice", [True]),
        # more tokens than a shape plan takes (SHAPE_TOKENS): answered by the full path
        (
            SHAPED % (", ".join(f'"D{i}"' for i in range(250)), "2"),
            SHAPED % (", ".join(f'"E{i}"' for i in range(250)), "3"),
            "alice",
            [],
        ),
        # CRLF, tabs and escapes: the read's error located on the request's own lines
        (
            SHAPED % ('"D3"', "2"),
            '{\r\n\tpublicWorks {\r\n\t\tserviceRequests(where: {district: {in: ["\\u0044\\u0033"]}},'
            "\r\n\t\t\tfirst: 5000) { nodes { requestId district } } } }",
            "alice",
            [True],
        ),
    ],
)
def test_a_document_of_a_known_shape_is_answered_with_its_own_literals(
    home: Settings,
    gateway: Gateway,
    compiled: list[bool],
    learned: str,
    asked: str,
    user: str,
    tried: list[bool],
) -> None:
    """`asked` answered on a gateway that never saw its shape, then on one that compiled `learned`
    (tried: the plan answered it, handed it back, or was never offered it). A comment is no part of
    a shape: a long one makes the text lexed in a worker thread, or too long to be looked up."""
    _alike_by_shape(home, gateway, compiled, learned, asked, user, tried)


def _alike_by_shape(
    home: Settings,
    gateway: Gateway,
    compiled: list[bool],
    learned: str,
    asked: str,
    user: str,
    tried: list[bool],
    learner: str | None = None,
) -> None:
    """The differential check: `learner` (default `user`) runs `learned`, then `user` asks."""
    name = f"shaped-{user}-{hashlib.sha256(asked.encode()).hexdigest()[:16]}"
    fresh = Gateway(home)
    try:
        full = _run(fresh, user, asked, None, f"{name}-1")
    finally:
        fresh.close()
    compiled.clear()
    for sighting in (1, 2):  # compiled at the second clean run
        assert "errors" not in _run(gateway, learner or user, learned, None, f"{name}-learned-{sighting}")
    assert compiled == []
    by_shape = _run(gateway, user, asked, None, f"{name}-2")
    assert compiled == tried
    assert _without_request_id(by_shape) == _without_request_id(full)
    assert _record(home, f"{name}-2") == _record(home, f"{name}-1")


def test_literal_cursors_and_times_of_a_known_shape_are_answered_alike(
    home: Settings, gateway: Gateway, compiled: list[bool]
) -> None:
    """`after` and `asOf` literals: a bad cursor and a time before any snapshot are refused by the
    read (located on the request's own document); a time its scalar does not parse is handed back."""
    first = PAGED.replace("after: %s, ", "") % '"2999-01-01T00:00:00Z"'
    cursor = _run(gateway, "bob", first, None, "cursor")["data"]["publicWorks"]["serviceRequests"]
    learned = PAGED % ('"2999-01-01T00:00:00Z"', orjson.dumps(cursor["pageInfo"]["endCursor"]).decode())
    for asked, tried in [
        (PAGED % ('"2999-01-01T00:00:00Z"', '"not-a-cursor"'), [True]),
        (PAGED % ('"1999-01-01T00:00:00Z"', '"x"'), [True]),
        (PAGED % ('"not a time"', '"x"'), [False]),
        (PAGED % ('"2999-01-01"', '"x"'), [True]),  # a date alone parses as a DateTime
    ]:
        learning = Gateway(home)  # one that has not compiled `learned` yet
        try:
            _alike_by_shape(home, learning, compiled, learned, asked, "bob", tried)
        finally:
            learning.close()


MASKED = (
    "{ publicWorks { serviceRequests(where: {requesterName: {eq: %s}}) { nodes { requestId district } } } }"
)


@pytest.mark.parametrize(("learner", "user"), [("alice", "bob"), ("alice", "dana")])
def test_a_shape_learned_from_one_caller_answers_another_as_the_full_path(
    home: Settings, gateway: Gateway, compiled: list[bool], learner: str, user: str
) -> None:
    """A plan learned from one caller's request serves another caller of the same schema only
    through the rows field's own read: masks (bob may not filter on `requesterName`) and row
    scopes (dana sees D3) are the asking caller's."""
    _alike_by_shape(
        home, gateway, compiled, MASKED % '"Person 1"', MASKED % '"Person 7"', user, [True], learner
    )


def test_a_text_outside_the_compiled_form_is_lexed_once(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a shape plan exists, a text without a plan of its own is lexed to look for its shape; a
    text that ran clean twice and did not compile has no compiled shape, and is not lexed again."""
    lexed: list[str] = []
    lex = compiled_module.lex
    monkeypatch.setattr(compiled_module, "lex", lambda text, *limit: lexed.append(text) or lex(text, *limit))
    for sighting in (1, 2):
        assert "errors" not in _run(gateway, "bob", SHAPED % ('"D3"', "2"), None, f"lexed-learned-{sighting}")
    outside = (
        "{ publicWorks { serviceRequests(first: 1) { nodes { ...R } } } } "
        "fragment R on PublicWorksServiceRequestsRow { requestId }"
    )
    for n in range(3):
        assert "errors" not in _run(gateway, "bob", outside, None, f"lexed-outside-{n}")
    assert lexed == [outside, outside]  # tried to compile at its second clean run


@pytest.mark.parametrize(
    "text", ["1 " * (TEXT_LIMIT // 2), "#\n" * (TEXT_LIMIT // 2 - 3) + "{ a }"], ids=["ints", "comments"]
)
def test_a_long_text_is_lexed_no_further_than_a_shape_reaches(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Texts without a plan of their own are lexed on the event loop: one longer than any shape plan
    is read only as far as the longest shape plan may reach (4 KB of Int tokens took ~11 ms, of
    comments ~3.5 ms)."""
    tokens: list[int] = []

    class Counting(Lexer):
        def read_next_token(self, start: int) -> Any:
            tokens.append(start)
            return super().read_next_token(start)

    monkeypatch.setattr(shapes, "Lexer", Counting)  # the parser keeps its own
    for sighting in (1, 2):
        assert "errors" not in _run(gateway, "bob", SHAPED % ('"D3"', "2"), None, f"long-lex-{sighting}")
    tokens.clear()
    assert len(text) <= TEXT_LIMIT and _run(gateway, "bob", text, None, "long-lex")["errors"]
    assert len(tokens) <= compiled_module.SHAPE_TOKENS + 1


def _lexed_depth(text: str) -> int:
    depth = deepest = 0
    lexer = Lexer(Source(text))
    while (token := lexer.advance()).kind is not TokenKind.EOF:
        if token.kind.value in "{[(":
            depth += 1
            deepest = max(deepest, depth)
        elif token.kind.value in "}])":
            depth -= 1
    return deepest


@pytest.mark.parametrize(
    "text",
    [
        '{ a(s: """x\\\\"""' + "[" * 70 + '""") }',  # a backslash, then an escaped `"""`
        '{ a(s: """x\\"""[[""") }',
        '{ a(s: "x\\"[[") }',
        "{ a #\r" + "{ b " * 3 + "}" * 3 + "\n}",  # a comment ends at CR
        "#\r" + "[" * 70,
    ],
)
def test_nesting_counts_the_brackets_the_lexer_reads(text: str) -> None:
    """A shape plan skips the bracket count, so it must be a function of the tokens: a document of
    a known shape nests as deep as the one that compiled (`limits.nesting`, step 1)."""
    assert nesting(text) == min(_lexed_depth(text), MAX_NESTING + 1)


@pytest.mark.parametrize("operation_name", [["Rows"], {"name": "Rows"}])
def test_an_operation_name_that_is_not_a_string_is_bad_input(server: Any, operation_name: Any) -> None:
    """Strawberry passes `operationName` through unchecked; a list or object names no operation
    (HTTP 400 `BAD_USER_INPUT`, as for `7`), never an internal error (the plan cache's key)."""
    payload = {"query": ROWS, "variables": {"first": 1}, "operationName": operation_name}
    for kind in (PLAIN, NOT_PLAIN):
        response = server.client.post(
            "/graphql",
            content=orjson.dumps(payload),
            headers={"Authorization": f"Bearer {server.token('bob')}", "Content-Type": kind},
        )
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_a_document_run_once_is_not_compiled_and_a_flood_of_them_keeps_the_plans(
    home: Settings, gateway: Gateway, compiled: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compiling costs ~0.8 ms, so a shape is compiled at its second clean run: documents seen once
    (here more than `PLAN_CACHE` of them, each of a new shape) are never compiled, and the plan in
    use stays."""
    compiles: list[Any] = []
    compile_read = compiled_module.compile_read
    monkeypatch.setattr(
        compiled_module, "compile_read", lambda *args: compiles.append(args) or compile_read(*args)
    )
    _twice(home, gateway, "bob", ROWS, {"first": 2}, "kept")
    assert compiled == [True] and len(compiles) == 1
    for n in range(compiled_module.PLAN_CACHE + 8):
        once = f"query Once{n} {{ publicWorks {{ serviceRequests(first: 1) {{ nodes {{ requestId }} }} }} }}"
        assert "errors" not in _run(gateway, "bob", once, None, f"once-{n}")
    assert len(compiles) == 1
    assert _run(gateway, "bob", ROWS, {"first": 2}, "kept-after") and compiled == [True, True]


def test_a_flood_of_one_off_texts_of_one_shape_that_serves_no_other_text_keeps_the_plans(
    home: Settings, gateway: Gateway, compiled: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan with a literal outside the rows field's arguments (here a variable's default) serves
    its own text only, not its shape: texts of one such shape, each sent once (the same document
    with other whitespace), are one-off documents too. They must not each be compiled (~0.8 ms
    apiece) nor push a plan in use (here one serving its text only too) out."""
    compiles: list[Any] = []
    compile_read = compiled_module.compile_read
    monkeypatch.setattr(
        compiled_module, "compile_read", lambda *args: compiles.append(args) or compile_read(*args)
    )
    rows = "publicWorks { serviceRequests(first: $first) { nodes { requestId%s } } }"
    kept = "query K($first: Int = 2) { %s }" % (rows % " district")
    _twice(home, gateway, "bob", kept, None, "kept-text")
    assert compiled == [True] and len(compiles) == 1
    defaulted = (
        "query D($first: Int = 1) { publicWorks { serviceRequests(first: $first) { nodes { requestId } } } }"
    )
    for n in range(compiled_module.PLAN_CACHE + 8):
        assert "errors" not in _run(gateway, "bob", defaulted + " " * n, None, f"once-text-{n}")
    assert _run(gateway, "bob", kept, None, "kept-text-after") and compiled == [True, True]
    assert len(compiles) <= 2  # at most the shape's second text, which finds it serves no other
    _twice(home, gateway, "bob", defaulted, None, "again-text")  # a text of it run twice: compiled
    assert compiled == [True] * 4 and len(compiles) == 3


def test_a_long_document_is_never_compiled(home: Settings, gateway: Gateway, compiled: list[bool]) -> None:
    """A plan holds its document's nodes and tokens: documents over `TEXT_LIMIT` keep none."""
    query = ROWS + "\n#" + "x" * TEXT_LIMIT
    first = _twice(home, gateway, "bob", query, {"first": 2}, "long")
    assert compiled == [] and len(first["data"]["publicWorks"]["serviceRequests"]["nodes"]) == 2
    assert _twice(home, gateway, "bob", ROWS, {"first": 2}, "short") and compiled == [True]


# -- state, concurrency and the surfaces around a plan (review 3) ---------------------------------


def _together(gateway: Gateway, requests: list[tuple[str, str, Any, str]]) -> list[Any]:
    """`(user, query, variables, request id)` run at once on one event loop, answers in order."""
    principals = {user: Principal(subject=user, claims={"sub": user}) for user, *_ in requests}

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(
            *(
                gateway.execute(principals[user], query, variables, request_id=rid, client="10.0.0.9")
                for user, query, variables, rid in requests
            )
        )

    return asyncio.run(all_at_once())


def test_requests_in_flight_while_their_plan_is_learned_are_answered_as_the_full_path(
    home: Settings, gateway: Gateway, compiled: list[bool]
) -> None:
    """Many requests of one text and of one shape at once, on a gateway that has compiled neither:
    the first wave all take the full path and each learns (one plan per key, whoever finishes
    last), the second wave is answered by the plans; every answer and record is the one a fresh
    gateway gives the same request alone."""
    users = ["alice", "bob", "dana"]
    wave = [
        *(
            (users[n % 3], ROWS, {"first": n % 4 + 1, "where": {"priority": {"gte": n % 3}}}, "text")
            for n in range(9)
        ),
        *((users[n % 3], SHAPED % (f'"D{n % 9 + 1}"', str(n % 5 + 1)), None, "shape") for n in range(9)),
    ]
    requests = [
        (user, query, variables, f"together-{kind}-{n}")
        for n, (user, query, variables, kind) in enumerate(wave)
    ]
    first = _together(gateway, [(u, q, v, f"{rid}-a") for u, q, v, rid in requests])
    assert not any(compiled)  # nothing compiled before the first wave ended
    compiled.clear()
    second = _together(gateway, [(u, q, v, f"{rid}-b") for u, q, v, rid in requests])
    assert compiled == [True] * len(requests)
    fresh = Gateway(home)
    try:
        alone = [_run(fresh, u, q, v, f"{rid}-alone") for u, q, v, rid in requests]
    finally:
        fresh.close()
    for (_, _, _, rid), a, b, c in zip(requests, first, second, alone, strict=True):
        assert _without_request_id(a) == _without_request_id(b) == _without_request_id(c), rid
        assert _record(home, f"{rid}-a") == _record(home, f"{rid}-b") == _record(home, f"{rid}-alone") != []


def _logged(settings: Settings, request_id: str) -> list[dict[str, Any]]:
    return [
        decode_row(r)
        for r in AccessLog(get_engine(settings.metadata_url)).rows()
        if r["request_id"] == request_id
    ]


@pytest.mark.parametrize("kind", [PLAIN, NOT_PLAIN])
def test_a_body_naming_query_twice_runs_and_logs_the_last(
    server: Any, compiled: list[bool], kind: str
) -> None:
    """`{"query": A, "query": B}`: the pipeline's parser (json) and Strawberry's keep the last
    member alike, so B is what runs, what a plan answers and what the record's `operation_hash`
    names; a body with a UTF-8 BOM is refused (RFC 8259 §8.1) with a record, on either path."""
    other = SHAPED % ('"D2"', "1")
    learned = ROWS
    headers = {"Authorization": f"Bearer {server.token('bob')}", "Content-Type": kind}
    for gte in range(3):  # the third time by the plan (a new body each time: no response cache hit)
        body = (
            b'{"query": %s, "query": %s, "variables": {"first": 2, "where": {"priority": {"gte": %d}}}}'
            % (
                orjson.dumps(other),
                orjson.dumps(learned),
                gte,
            )
        )
        response = server.client.post("/graphql", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]["publicWorks"]["serviceRequests"]["nodes"]) == 2
        [record] = _logged(server.settings, response.headers["x-request-id"])
        assert record["operation_hash"] == hashlib.sha256(" ".join(learned.split()).encode()).hexdigest()
    assert compiled[-1:] == [True]
    response = server.client.post("/graphql", content=b"\xef\xbb\xbf" + body, headers=headers)
    assert (
        response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    )
    assert len(_logged(server.settings, response.headers["x-request-id"])) == 1


def test_two_gateways_on_two_event_loops_reading_at_once_each_get_their_answers(home: Settings) -> None:
    """Two gateways, each on its own event loop in its own thread (a server's loop and an in-process
    caller's, as the in-process tests run them): texts of a known shape longer than `LEX_ON_LOOP`
    are lexed in the limits' worker threads, so both loops wait on that process-wide limiter at
    once. Each request is answered; none waits forever on a wake-up sent to the other loop (a
    deadlock before the limiter was one per event loop)."""
    principal = Principal(subject="alice", claims={"sub": "alice"})
    gateways = [Gateway(home) for _ in range(2)]
    answers: list[Any] = []

    def loop(thread: int) -> None:
        gateway = gateways[thread]

        async def requests(batch: int) -> list[Any]:
            out = [
                await gateway.execute(
                    principal, SHAPED % ('"D3"', "2"), None, request_id=f"loops-{thread}-{batch}", client=None
                )
            ]
            for n in range(10):
                text = SHAPED % (f'"D{n % 9 + 1}"', str(n % 4 + 1)) + "\n#" + "x" * LEX_ON_LOOP
                rid = f"loops-{thread}-{batch}-{n}"
                out.append(await gateway.execute(principal, text, None, request_id=rid, client=None))
            return out

        async def batches() -> list[list[Any]]:
            return await asyncio.gather(*(requests(batch) for batch in range(3)))

        answers.extend(body for batch in asyncio.run(batches()) for body in batch)

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(2)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60  # ~1 s of work: a thread still waiting then waits forever
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for gateway in gateways:
            gateway.close()
    assert len(answers) == 66 and all("errors" not in body and body["data"] for body in answers)


COUNTS = ProductSpec(
    department="transportation",
    product="traffic_counts",
    classification="public",
    owner="bob@city.example",
    description="Vehicles counted per sensor.",
    key="sensor",
    unscoped="counted city-wide",
    columns=(ColumnSpec("sensor", "varchar"), ColumnSpec("vehicles", "bigint")),
)
COUNTS_V2 = ProductSpec(
    **{**COUNTS.__dict__, "columns": (*COUNTS.columns, ColumnSpec("speed_kmh", "double"))}
)
COUNTED = (
    "{ transportation { trafficCounts(first: 3) { totalCount nodes { sensor vehicles } snapshot { id } } } }"
)


def _as_fresh(home: Settings, gateway: Gateway, query: str, name: str, user: str = "bob") -> Any:
    """`query` as `user` on `gateway` after it picks up the catalog (its next poll), checked against a
    gateway started on that catalog: the same answer and record."""
    gateway._polled = 0.0  # poll now, not within the second
    body = _run(gateway, user, query, None, f"{name}-1")
    fresh = Gateway(home)
    try:
        assert _without_request_id(body) == _without_request_id(_run(fresh, user, query, None, f"{name}-2"))
    finally:
        fresh.close()
    assert _record(home, f"{name}-1") == _record(home, f"{name}-2") != []
    return body


def test_a_publish_between_requests_is_served_as_the_full_path(
    home: Settings, gateway: Gateway, compiled: list[bool], publish_product: Any
) -> None:
    """A plan goes with its schema: after a new snapshot, a new column or a snapshot marked broken,
    the same text answers from the new catalog state exactly as a gateway started on it does, the
    plan of the new schema included (a broken mark on an intact file: hashed again and served)."""
    first = publish_product(
        home, COUNTS, "SELECT 'S' || i AS sensor, CAST(i AS BIGINT) AS vehicles FROM range(9) t(i)"
    )
    for n in range(3):  # compiled at the second clean run, the plan answers the third
        body = _as_fresh(home, gateway, COUNTED, f"publish-v1-{n}")
    assert (
        compiled == [True] and body["data"]["transportation"]["trafficCounts"]["snapshot"]["id"] == first.id
    )
    second = publish_product(
        home,
        COUNTS_V2,
        "SELECT 'T' || i AS sensor, CAST(i AS BIGINT) AS vehicles, 5.0 AS speed_kmh FROM range(4) t(i)",
    )
    for n in range(3):
        body = _as_fresh(home, gateway, COUNTED, f"publish-v2-{n}")
    assert compiled == [True, True]  # the old schema's plan is not asked; the new one's is learned
    page = body["data"]["transportation"]["trafficCounts"]
    assert page["snapshot"]["id"] == second.id and page["totalCount"] == 4
    assert "errors" not in _as_fresh(home, gateway, COUNTED.replace("vehicles", "speedKmh"), "publish-v2-new")
    Catalog(get_engine(home.metadata_url), home.home).mark_broken(second.id, "checksum mismatch", "test")
    before = len(compiled)
    for n in range(4):  # the mark lifted is a new catalog state: a new schema again, compiled anew
        body = _as_fresh(home, gateway, COUNTED, f"publish-broken-{n}")
    assert compiled[before:] == [True]  # the mark's new schema: its file hashed again, found intact
    assert body["data"]["transportation"]["trafficCounts"]["snapshot"]["id"] == second.id


SALARIES = "{ hr { salaries(first: 2) { totalCount nodes { employeeId salary } } } }"


def test_a_grant_given_and_revoked_between_requests_is_served_as_the_full_path(
    home: Settings, gateway: Gateway, compiled: list[bool]
) -> None:
    """A plan is learned on the schema of the caller's discoverable set: once a revocation takes
    the product out of that set, the same text fails validation as a gateway started on that
    policy fails it (with the `deny` record of a hidden product), never answered by the plan."""
    request = (
        'mutation { requestAccess(product: "hr.salaries", action: READ, purpose: "audit", days: 1) { id } }'
    )
    rid = _run(gateway, "mallory", request, None, "grant-request")["data"]["requestAccess"]["id"]
    approve = "mutation($id: Int!) { approveAccessRequest(id: $id) { state } }"
    assert _run(gateway, "frank", approve, {"id": rid}, "grant-approve")["data"]["approveAccessRequest"]
    for n in range(3):
        body = _as_fresh(home, gateway, SALARIES, f"granted-{n}", "mallory")
    assert compiled == [True] and body["data"]["hr"]["salaries"]["totalCount"] == 5
    revoke = "mutation($id: Int!) { revokeAccess(id: $id) { state } }"
    assert (
        _run(gateway, "frank", revoke, {"id": rid}, "grant-revoke")["data"]["revokeAccess"]["state"]
        == "REVOKED"
    )
    body = _as_fresh(home, gateway, SALARIES, "revoked", "mallory")
    assert compiled == [True] and body["data"] is None
    assert [r["decision"] for r in _record(home, "revoked-1")] == ["deny"]


def test_a_compiled_answer_is_cached_and_invalidated_as_a_full_path_answer(
    server: Any, compiled: list[bool], publish_product: Any
) -> None:
    """Over HTTP the response cache keys a compiled answer as any other (catalog version, policy
    version, caller, content type, body): the same body again is the cached bytes, with its own
    record; after a publish it is answered again from the new snapshot, never the cached one."""
    settings = server.settings
    first = publish_product(
        settings, COUNTS, "SELECT 'S' || i AS sensor, CAST(i AS BIGINT) AS vehicles FROM range(9) t(i)"
    )
    query = COUNTED.replace("first: 3", "first: $first").replace(
        "{ transportation", "query($first: Int) { transportation"
    )
    headers = {"Authorization": f"Bearer {server.token('bob')}", "Content-Type": PLAIN}

    def post(first: int) -> Any:
        body = orjson.dumps({"query": query, "variables": {"first": first}})
        response = server.client.post("/graphql", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert len(_logged(settings, response.headers["x-request-id"])) == 1
        return response

    deadline = time.monotonic() + 30
    while "errors" in post(1).json() and time.monotonic() < deadline:  # the server's next poll
        time.sleep(0.2)
    post(3)  # its second clean run: compiled
    compiled.clear()
    answers = [post(2), post(2)]
    assert compiled == [True] and answers[0].content == answers[1].content  # the second from the cache
    assert answers[0].json()["data"]["transportation"]["trafficCounts"]["snapshot"]["id"] == first.id
    second = publish_product(
        settings, COUNTS, "SELECT 'T' || i AS sensor, CAST(i AS BIGINT) AS vehicles FROM range(4) t(i)"
    )
    while (page := post(2).json()["data"]["transportation"]["trafficCounts"])["snapshot"]["id"] != second.id:
        assert time.monotonic() < deadline + 30, page
        time.sleep(0.2)
    assert page["totalCount"] == 4 and [n["sensor"] for n in page["nodes"]] == ["T0", "T1"]


def test_requests_cancelled_while_their_text_is_lexed_leave_the_next_ones_answered(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request cancelled (a client gone) while its text is lexed in the limits' worker thread
    ends when the lexing does, holding no worker: the next requests of the shape, more at once
    than there are workers, are answered."""
    principal = Principal(subject="alice", claims={"sub": "alice"})
    for sighting in (1, 2):
        assert "errors" not in _run(
            gateway, "alice", SHAPED % ('"D3"', "2"), None, f"cancel-learned-{sighting}"
        )
    release, lexing = threading.Event(), threading.Semaphore(0)
    lex = compiled_module.lex

    def held(text: str, *limit: int) -> Any:
        if "held" in text:
            lexing.release()
            release.wait(60)
        return lex(text, *limit)

    monkeypatch.setattr(compiled_module, "lex", held)
    long = "\n#" + "x" * LEX_ON_LOOP

    async def scenario() -> list[Any]:
        def ask(n: int, note: str) -> Any:
            text = SHAPED % (f'"D{n}"', "2") + long + note
            return gateway.execute(principal, text, None, request_id=f"cancel-{note}-{n}", client=None)

        cancelled = [asyncio.ensure_future(ask(n, "held")) for n in (1, 2)]
        for _ in cancelled:  # both workers are lexing
            await anyio.to_thread.run_sync(lexing.acquire)
        for task in cancelled:
            task.cancel()
        release.set()
        for task in cancelled:
            with pytest.raises(asyncio.CancelledError):
                await task
        return await asyncio.wait_for(asyncio.gather(*(ask(n, "after") for n in range(1, 6))), 60)

    answers = asyncio.run(scenario())
    assert all("errors" not in body and body["data"] for body in answers)
    assert _record(gateway.settings, "cancel-held-1") == []  # as for any request cancelled in-process


@pytest.mark.parametrize(
    ("query", "calls", "tried"),
    [
        (SHAPED % ('"D3"', "2"), [(None, None), ({}, None), (None, None), ({"unused": 1}, None)], [True] * 4),
        # a name is part of a plan's key: (text, "Rows") is learned apart from (text, None)
        (
            ROWS,
            [({"first": 2}, n) for n in (None, "Rows", "Rows", None, "Rows", None)],
            [True] * 4,
        ),
        # a required variable missing or null: handed back, the full path reports it
        (
            REQUIRED,
            [({"first": 2}, None), ({"first": 2}, None), (None, None), ({}, None), ({"first": None}, None)],
            [False] * 6,
        ),
    ],
    ids=["no-variables", "operation-name", "required-missing"],
)
def test_what_the_portal_sends_is_answered_as_the_full_path(
    home: Settings,
    gateway: Gateway,
    compiled: list[bool],
    query: str,
    calls: list[tuple[Any, str | None]],
    tried: list[bool],
) -> None:
    """`Gateway.execute` (the portal) with variables None, {} or extra ones, with and without an
    operation name, and without a required variable: each answer and record as a fresh gateway's."""
    fresh = Gateway(home)
    try:
        for n, (variables, name) in enumerate(calls):
            principal = Principal(subject="bob", claims={"sub": "bob"})
            rid = f"portal-{hashlib.sha256(query.encode()).hexdigest()[:8]}-{n}"
            answers = [
                asyncio.run(
                    gw.execute(
                        principal, query, variables, request_id=f"{rid}-{k}", client=None, operation_name=name
                    )
                )
                for k, gw in enumerate((fresh, gateway))
            ]
            assert _without_request_id(answers[0]) == _without_request_id(answers[1])
            assert _record(home, f"{rid}-0") == _record(home, f"{rid}-1") != []
    finally:
        fresh.close()
    assert compiled == tried  # each request the fresh gateway and this one gave a plan


@pytest.mark.parametrize(
    ("query", "operation_name", "message"),
    [
        (ROWS, "Other", 'Unknown operation named "Other".'),
        ("{ me { user } }", "", 'Unknown operation named "".'),
        ("", None, "No GraphQL query found in the request"),
    ],
    ids=["unknown-name", "empty-name", "empty-document"],
)
def test_a_request_strawberry_refuses_before_executing_is_bad_input_in_process(
    server: Any, gateway: Gateway, query: str, operation_name: str | None, message: str
) -> None:
    """`Gateway.execute` (the portal) answers a document with no operation of the name given, or
    no document, as `POST /graphql` does: refused as a whole, HTTP 400 `BAD_USER_INPUT`, with one
    record, never an internal error."""
    payload = {"query": query, "variables": {"first": 1}, "operationName": operation_name}
    response = server.client.post(
        "/graphql",
        content=orjson.dumps(payload),
        headers={"Authorization": f"Bearer {server.token('bob')}", "Content-Type": PLAIN},
    )
    assert (response.status_code, response.json()["errors"][0]["message"]) == (400, message)
    principal = Principal(subject="bob", claims={"sub": "bob"})
    rid = f"refused-{operation_name}-{len(query)}"
    with pytest.raises(GovernedError) as refused:
        asyncio.run(
            gateway.execute(
                principal, query, {"first": 1}, request_id=rid, client=None, operation_name=operation_name
            )
        )
    assert (refused.value.status, refused.value.code, str(refused.value)) == (400, "BAD_USER_INPUT", message)
    [record] = _logged(gateway.settings, rid)
    assert (record["error_code"], record["decision"]) == ("BAD_USER_INPUT", "none")


def test_an_internal_error_is_logged_once_with_its_traceback_as_on_the_full_path(
    gateway: Gateway, compiled: list[bool], caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's log gets one record per internal error, with the original exception, whether
    the full path or a plan answered (the caller sees only `requestId`)."""
    logged = []
    for n, query in enumerate([NAN % "3", NAN % "1", NAN % "1", NAN % "3"]):  # full path x3, plan
        caplog.clear()
        with caplog.at_level("ERROR", logger="gateway.schema"):
            body = _run(gateway, "bob", query, None, f"logged-{n}")
        assert [e["extensions"]["requestId"] for e in body.get("errors", ())] == (
            [] if n in (1, 2) else [f"logged-{n}"]
        )
        logged.append([(r.getMessage(), r.exc_info and type(r.exc_info[1]).__name__) for r in caplog.records])
    assert compiled == [True]
    message = "internal error in a resolver (request logged-%d)"
    assert logged == [[(message % 0, "GraphQLError")], [], [], [(message % 3, "GraphQLError")]]
