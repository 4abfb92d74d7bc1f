"""Document shapes: two GraphQL documents of one shape differ only in their literal values, so every
validation rule but ValuesOfCorrectType answers both alike (what lets `CheapLimits` validate a
document with inline literals like its variable form: the full rules once per shape and schema,
then ValuesOfCorrectType alone on each document of that shape).

A shape is the document's token stream as graphql-core's lexer read it for the parser (under the
parser's token limit; comments left out, they carry nothing the rules read) with each Int, Float,
String and block String token replaced by `#kind:n`: `n` numbers the distinct literal values in
order of first appearance. So two documents share a shape only if equal literals stand in the same
places, which is all OverlappingFieldsCanBeMerged reads of them (`a: f(x: 1) a: f(x: 2)` conflicts,
`a: f(x: 1) a: f(x: 1)` does not: different shapes). Enum values, `true`, `false` and `null` are
Name tokens (GraphQL spec §2.1.9): they stay in the shape, and so do list lengths and nesting.
The shape is kept as the SHA-256 of those items joined by spaces (unambiguous: no item holds a
space, and a name cannot start with `#` or be a punctuator), so a cache of shapes holds 32 bytes
per key however long the document.

What ValuesOfCorrectType checks of a literal value is `is_valid_value_node`: the literal's scalar
type parses it (`parse_literal`), and that type depends only on the shape. So a shape that passed
every rule keeps, per literal in token order, the input type graphql-core's TypeInfo gave it
(`literal_types`), and each later document of the shape has its literals checked by that same
method against those types (`check_literals`): the same errors, in the same order, without walking
the document again. A shape where a list or object literal stands in a scalar's place (a custom
scalar parses the composite whole) keeps no types: its documents get ValuesOfCorrectType in full.

`shape_invariant(rules)` says whether a rule set may be answered per shape: every rule but
ValuesOfCorrectType (it runs on each document) must be one known to read only names, structure,
variables and null-ness (the other specified rules, Strawberry's depth and alias limiters, and the
MaybeNull and OneOf rules Strawberry always adds). An unknown rule,
or a depth limiter with a `should_ignore` (it may read argument values), makes the answer no: the
document gets the full validation (fail closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from graphql.error import GraphQLSyntaxError
from graphql.language.ast import Location
from graphql.language.lexer import Lexer

from graphql import (
    DocumentNode,
    FloatValueNode,
    GraphQLError,
    GraphQLInputType,
    GraphQLSchema,
    IntValueNode,
    ListValueNode,
    NoSchemaIntrospectionCustomRule,
    ObjectValueNode,
    Source,
    StringValueNode,
    Token,
    TokenKind,
    TypeInfo,
    TypeInfoVisitor,
    ValueNode,
    ValuesOfCorrectTypeRule,
    Visitor,
    get_named_type,
    get_nullable_type,
    is_input_object_type,
    is_list_type,
    specified_rules,
    visit,
)

Shape = bytes  # a SHA-256 digest
LiteralTypes = tuple[GraphQLInputType | None, ...]  # per literal value node, in token order
MAX_ERRORS = 100  # graphql-core's `validate` stops there (and says so): such documents get it in full

LITERALS = frozenset({TokenKind.INT, TokenKind.FLOAT, TokenKind.STRING, TokenKind.BLOCK_STRING})
# Rules made per request by a factory (Strawberry's limiters), known by where they are defined.
_FACTORY_RULES = frozenset(
    {
        "strawberry.extensions.query_depth_limiter.create_validator.<locals>.DepthLimitValidator",
        "strawberry.extensions.max_aliases.create_validator.<locals>.MaxAliasesValidator",
    }
)
_RULES = frozenset(specified_rules) - {ValuesOfCorrectTypeRule} | {NoSchemaIntrospectionCustomRule}


def shape(start: Token) -> Shape:
    """The shape of the tokens after `start` (a lexer's SOF token, once the parser has read the
    whole document: the lexer links every token it read to the next)."""
    items: list[str] = []
    numbers: dict[tuple[TokenKind, str], int] = {}
    token = start.next
    while token is not None and token.kind is not TokenKind.EOF:
        kind = token.kind
        if kind is TokenKind.NAME:
            items.append(token.value or "")
        elif kind in LITERALS:
            items.append(f"#{kind.value}:{numbers.setdefault((kind, token.value or ''), len(numbers))}")
        elif kind is not TokenKind.COMMENT:
            items.append(kind.value)
        token = token.next
    return hashlib.sha256(" ".join(items).encode()).digest()


@dataclass(frozen=True)
class Lexed:
    """A document read by graphql-core's lexer alone (no parse): its shape, and its Int, Float and
    String tokens in order (the literals the shape leaves out), each a value node as the parser
    would make it (`literal_node`)."""

    source: Source
    shape: Shape
    literals: tuple[ValueNode, ...]


def length(start: Token) -> int:
    """The number of tokens after `start` (as for `shape`), comments left out."""
    count = 0
    token = start.next
    while token is not None and token.kind is not TokenKind.EOF:
        count += token.kind is not TokenKind.COMMENT
        token = token.next
    return count


def lex(text: str, max_tokens: int, longest: int) -> Lexed | None:
    """`text` lexed, or None if it does not lex or has more than `max_tokens` tokens (the parser
    refuses both; graphql-core 3.2.14's parser counts comments toward `max_tokens`, and so does
    this: a shape leaves comments out, so a comment-padded text shares a valid document's shape),
    or more than `longest` tokens, comments left out (then it has no shape the caller looks for:
    the lexer stops there, so a long text costs no more than one of `longest` tokens), or more
    than `longest` `#` (comments, or in strings: such a text is left to the full path). About
    0.1 ms for a typical read of ~30 tokens; 4 KB of Int tokens took ~11 ms unbounded."""
    if text.count("#") > longest:  # the lexer reads a run of comments whole, in one `advance`
        return None
    source = Source(text)
    lexer = Lexer(source)
    start = lexer.token
    tokens = 0
    try:
        while lexer.advance().kind is not TokenKind.EOF:
            tokens += 1
            if tokens > longest:
                return None
    except GraphQLSyntaxError:
        return None
    literals = []
    count = 0
    token = start.next
    while token is not None and token.kind is not TokenKind.EOF:
        count += 1
        if token.kind in LITERALS:
            literals.append(literal_node(token, source))
        token = token.next
    return Lexed(source, shape(start), tuple(literals)) if count <= max_tokens else None


def literal_node(token: Token, source: Source) -> ValueNode:
    """The value node graphql-core's parser makes of an Int, Float or String token (`parse_int`,
    `parse_float`, `parse_string_literal`), located in `source`."""
    loc = Location(token, token, source)
    if token.kind is TokenKind.INT:
        return IntValueNode(value=token.value, loc=loc)
    if token.kind is TokenKind.FLOAT:
        return FloatValueNode(value=token.value, loc=loc)
    return StringValueNode(value=token.value, block=token.kind is TokenKind.BLOCK_STRING, loc=loc)


class _Types(Visitor):
    """Records the input type TypeInfo gives each Int, Float and String value node."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.types: dict[int, GraphQLInputType | None] = {}
        self.composite_scalar = False

    def enter_int_value(self, node: ValueNode, *_: Any) -> None:
        self.types[id(node)] = self.type_info.get_input_type()

    enter_float_value = enter_string_value = enter_int_value

    def enter_list_value(self, node: ListValueNode, *_: Any) -> None:
        if not is_list_type(get_nullable_type(self.type_info.get_parent_input_type())):  # type: ignore[arg-type]
            self.composite_scalar = True

    def enter_object_value(self, node: ObjectValueNode, *_: Any) -> None:
        if not is_input_object_type(get_named_type(self.type_info.get_input_type())):
            self.composite_scalar = True


def literal_types(
    schema: GraphQLSchema, document: DocumentNode, literals: Sequence[ValueNode]
) -> LiteralTypes | None:
    """The input type of each of `literals` (the document's literal value nodes in token order) as
    ValuesOfCorrectType sees it, or None if a list or object literal stands where a scalar goes."""
    type_info = TypeInfo(schema)
    recorder = _Types(type_info)
    visit(document, TypeInfoVisitor(type_info, recorder))
    if recorder.composite_scalar:
        return None
    return tuple(recorder.types.get(id(node)) for node in literals)


class _LiteralContext:
    """What `ValuesOfCorrectTypeRule.is_valid_value_node` reads of its validation context: the
    input type at the node, where errors go, and whether suggestions are hidden (graphql-core's
    default: not)."""

    hide_suggestions = False

    def __init__(self) -> None:
        self.input_type: GraphQLInputType | None = None
        self.errors: list[GraphQLError] = []

    def get_input_type(self) -> GraphQLInputType | None:
        return self.input_type

    def report_error(self, error: GraphQLError) -> None:
        self.errors.append(error)


def check_literals(literals: Sequence[ValueNode], types: LiteralTypes) -> list[GraphQLError] | None:
    """ValuesOfCorrectType's errors for a document of a shape whose literals have `types`, or None
    when this answer could differ from the full rule's (a literal count that does not match, or as
    many errors as `validate` would cut off at)."""
    if len(literals) != len(types):
        return None
    context = _LiteralContext()
    rule = ValuesOfCorrectTypeRule(context)  # type: ignore[arg-type]
    for node, input_type in zip(literals, types, strict=True):
        context.input_type = input_type
        rule.is_valid_value_node(node)
    return context.errors if len(context.errors) < MAX_ERRORS else None


def _free_variables(function: Callable[..., Any]) -> dict[str, Any]:
    cells = getattr(function, "__closure__", None) or ()
    return {name: cell.cell_contents for name, cell in zip(function.__code__.co_freevars, cells, strict=True)}


def _invariant(rule: type) -> bool:
    if rule in _RULES or rule is ValuesOfCorrectTypeRule:
        return True
    if f"{rule.__module__}.{rule.__qualname__}" not in _FACTORY_RULES:
        return False
    init = vars(rule).get("__init__")  # both factories define it, closing over their settings
    return init is not None and _free_variables(init).get("should_ignore") is None


def shape_invariant(rules: Collection[type]) -> bool:
    """True if every rule in `rules` but ValuesOfCorrectType answers all documents of one shape
    alike (module docstring)."""
    return all(_invariant(rule) for rule in rules)
