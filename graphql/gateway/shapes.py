"""Document shapes: two GraphQL documents of one shape differ only in their literal values, so every
validation rule but ValuesOfCorrectType answers both alike (what lets `CheapLimits` validate a
document with inline literals like its variable form: the full rules once per shape and schema,
then ValuesOfCorrectType alone on each document of that shape).

A shape is the document's token stream as graphql-core's lexer read it for the parser (under the
parser's token limit; comments left out, they carry nothing the rules read) with each Int, Float,
String and block String token replaced by `(kind, n)`: `n` numbers the distinct literal values in
order of first appearance. So two documents share a shape only if equal literals stand in the same
places, which is all OverlappingFieldsCanBeMerged reads of them (`a: f(x: 1) a: f(x: 2)` conflicts,
`a: f(x: 1) a: f(x: 1)` does not: different shapes). Enum values, `true`, `false` and `null` are
Name tokens (GraphQL spec §2.1.9): they stay in the shape, and so do list lengths and nesting.

`shape_invariant(rules)` says whether a rule set may be answered per shape: every rule but
ValuesOfCorrectType (it runs on each document) must be one known to read only names, structure,
variables and null-ness (the other specified rules, Strawberry's depth and alias limiters, and the
MaybeNull and OneOf rules Strawberry always adds). An unknown rule,
or a depth limiter with a `should_ignore` (it may read argument values), makes the answer no: the
document gets the full validation (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from graphql import (
    NoSchemaIntrospectionCustomRule,
    Token,
    TokenKind,
    ValuesOfCorrectTypeRule,
    specified_rules,
)

Shape = tuple[object, ...]

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
    items: list[object] = []
    numbers: dict[tuple[TokenKind, str], int] = {}
    token = start.next
    while token is not None and token.kind is not TokenKind.EOF:
        kind = token.kind
        if kind is TokenKind.NAME:
            items.append(token.value)
        elif kind in LITERALS:
            items.append((kind, numbers.setdefault((kind, token.value or ""), len(numbers))))
        elif kind is not TokenKind.COMMENT:
            items.append(kind)
        token = token.next
    return tuple(items)


def _free_variables(function: Callable[..., Any]) -> dict[str, Any]:
    cells = getattr(function, "__closure__", None) or ()
    return {name: cell.cell_contents for name, cell in zip(function.__code__.co_freevars, cells, strict=True)}


def _invariant(rule: type) -> bool:
    if rule in _RULES or rule is ValuesOfCorrectTypeRule:
        return True
    if f"{rule.__module__}.{rule.__qualname__}" not in _FACTORY_RULES:
        return False
    return _free_variables(rule.__init__).get("should_ignore") is None


def shape_invariant(rules: Collection[type]) -> bool:
    """True if every rule in `rules` but ValuesOfCorrectType answers all documents of one shape
    alike (module docstring)."""
    return all(_invariant(rule) for rule in rules)
