"""Cheap refusal: limits on a GraphQL document that need no full validation, and parsing and
validation off the event loop (the Strawberry extension `CheapLimits`, in place of Strawberry's
`ParserCache` and `ValidationCache`).

Measured before (issue 11): one 5 KB query repeating a field 1,800 times held the event loop about
1.3 s in graphql-core's OverlappingFieldsCanBeMerged rule (pairwise in same-named fields), and a
fragment fan-out (`...A ...A` in B, `...B ...B` in C, ...) took 0.4-1.2 s before the field limit
refused it. Now, in order, each step bounded by the one before:

1. on the text: at most MAX_NESTING levels of `{ [ (` (the parser recurses per level);
2. while parsing (`_CountingParser`): at most MAX_TOKENS tokens (`MaxTokensLimiter`), at most
   MAX_REPEATS copies of one response key and MAX_SPREADS fragment spreads written in one
   selection set: the parse stops at the first excess;
3. on the parsed document, one walk with fragments memoised (`refusal`): at most MAX_FIELDS fields
   with fragments expanded, at most MAX_SPREADS distinct fragments spread at one level, and a
   field-merging cost (what OverlappingFieldsCanBeMerged compares) within MAX_MERGE_COST; and at
   most MAX_VARIABLE_VALUES JSON values in the variables (graphql-core coerces them on the loop);
4. the full validation, every rule; or, for a document whose *shape* (`shapes.py`: the tokens with
   literal values as placeholders) already passed every rule on this schema, ValuesOfCorrectType
   alone, the one rule that reads literal values (issue 16: a query with its values inlined cost
   ~35 % more than its variable form, missing both caches).

Step 1 and the cache lookups run on the event loop; steps 2-4 run in a worker thread with its own
small limiter, so a slow one shares the GIL with the event loop (a switch every 5 ms) instead of
holding it. Documents and validation results are cached by document text (validation per schema),
shapes that validated clean by shape per schema; all three caches are bounded LRUs, and a schema's
entries go with it (each caller's schema is its own: a shape validated for one caller is never
taken as valid for another whose schema differs).
A refusal is an ordinary GraphQL error whose message carries one of LIMIT_MESSAGES (code
LIMIT_EXCEEDED), recorded like any refused query.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from graphql.error import GraphQLSyntaxError
from graphql.language.parser import Parser
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.shapes import LiteralTypes, Shape, check_literals, literal_types, shape, shape_invariant
from graphql import (
    DocumentNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    ValuesOfCorrectTypeRule,
    validate,
)

MAX_TOKENS = 2000
MAX_NESTING = 64  # brackets of any kind; a valid query within MAX_DEPTH nests far less
MAX_FIELDS = 2000
MAX_SPREADS = 50  # fragment spreads (named or inline) written in one selection set
MAX_REPEATS = 20  # copies of one response key written in one selection set
MAX_MERGE_COST = 20_000  # a query naming each field once costs its number of fields
# JSON values in `variables` (each object, list item and scalar): graphql-core coerces each one on
# the event loop before execution; a `where` of 1,500 terms (4,500 values) held it ~0.15 s.
MAX_VARIABLE_VALUES = 2_000
# Parsing and validation of documents not seen before: at most this many at once, per event loop.
WORKER_THREADS = 2
PARSE_CACHE = 512  # parsed documents
VALIDATION_CACHE = 512  # validated documents per schema
SHAPE_CACHE = 512  # shapes that passed every rule, per schema

NESTING_MESSAGE = "levels of nesting, which is not allowed"
FIELDS_MESSAGE = "fields with fragments expanded, which is not allowed"
SPREADS_MESSAGE = "fragment spreads in one selection set, which is not allowed"
REPEATS_MESSAGE = "is written more often in one selection set than allowed"
MERGE_MESSAGE = "repeats fields too often to be merged, which is not allowed"
VARIABLES_MESSAGE = "values in its variables, which is not allowed"
LIMIT_MESSAGES = (
    NESTING_MESSAGE,
    FIELDS_MESSAGE,
    SPREADS_MESSAGE,
    REPEATS_MESSAGE,
    MERGE_MESSAGE,
    VARIABLES_MESSAGE,
)

# Strings, block strings and comments hold no structure (GraphQL spec §2.1.7, §2.9.4), read as
# graphql-core's lexer reads them: in a block string a backslash escapes only `"""` (`\\"""` is a
# backslash, then an escaped `"""`), and a comment ends at CR as at LF. Any other reading counts
# brackets the parser never sees, or misses some it does.
_NOT_STRUCTURE = re.compile(
    r'"""(?:[^"\\]|\\"""|\\|"(?!""))*(?:"""|\Z)|"(?:[^"\\\n]|\\.)*(?:"|$)|#[^\n\r]*', re.M
)
_NOT_BRACKET = re.compile(r"[^{}\[\]()]+")
_OPENING, _CLOSING = frozenset("{[("), frozenset("}])")


def nesting(text: str, limit: int = MAX_NESTING) -> int:
    """The deepest nesting of brackets in GraphQL text, counted up to `limit` + 1 (then it stops)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _NOT_STRUCTURE.sub("", text)):
        if char in _OPENING:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in _CLOSING:
            depth -= 1
    return deepest


@dataclass
class _Walk:
    """One pass over an operation with fragments expanded (only once the field count is bounded)."""

    fragments: dict[str, FragmentDefinitionNode]
    cost: int = 0
    spreads: int = 0
    keys: dict[str, Counter[str]] = field(default_factory=dict)  # fragment -> response keys at its top

    def top_keys(self, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> Counter[str]:
        """Response keys at this level (through inline fragments and spreads), with their counts."""
        counts: Counter[str] = Counter()
        names: set[str] = set()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                counts[(selection.alias or selection.name).value] += 1
            elif isinstance(selection, InlineFragmentNode):
                counts.update(self.top_keys(selection.selection_set, seen))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                names.add(name)
                if name in self.fragments and name not in seen:
                    if name not in self.keys:
                        self.keys[name] = self.top_keys(self.fragments[name].selection_set, seen | {name})
                    counts.update(self.keys[name])
        self.spreads = max(self.spreads, len(names))
        return counts

    def fields(self, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> Iterator[FieldNode]:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self.fields(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in self.fragments and name not in seen:
                    yield from self.fields(self.fragments[name].selection_set, seen | {name})

    def visit(self, selection_set: SelectionSetNode | None, copies: int, seen: frozenset[str]) -> None:
        """Add this set's merging cost: `copies` instances of it are compared pairwise, and each
        same-named group of its fields pairwise again (OverlappingFieldsCanBeMerged)."""
        counts = self.top_keys(selection_set, seen)
        self.cost += copies * sum(c * c for c in counts.values())
        if self.cost > MAX_MERGE_COST:
            return
        for node in self.fields(selection_set, seen):
            if node.selection_set is not None:
                key = (node.alias or node.name).value
                self.visit(node.selection_set, copies * counts[key], seen)


def _count(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    memo: dict[str, int],
    stack: frozenset[str],
    budget: int,
) -> int:
    total = 0
    for selection in selection_set.selections if selection_set else ():
        if total > budget:
            break  # stop counting early: the answer is already "too many"
        if isinstance(selection, FieldNode):
            total += 1 + _count(selection.selection_set, fragments, memo, stack, budget - total)
        elif isinstance(selection, InlineFragmentNode):
            total += _count(selection.selection_set, fragments, memo, stack, budget - total)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in stack or name not in fragments:
                continue  # cycles and unknown fragments are reported by the standard rules
            if name not in memo:
                memo[name] = _count(fragments[name].selection_set, fragments, memo, stack | {name}, budget)
            total += memo[name]
    return total


def variable_values(variables: Any, limit: int = MAX_VARIABLE_VALUES) -> int:
    """How many JSON values `variables` holds, counted up to `limit` + 1 (then it stops)."""
    count, stack = 0, [variables]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def refusal(document: DocumentNode) -> GraphQLError | None:
    """The first limit of step 2 the document breaks, or None. Linear in the document's size: the
    field count is memoised per fragment, and the expanded walk runs only once it is bounded."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode):
            continue
        if _count(operation.selection_set, fragments, {}, frozenset(), MAX_FIELDS) > MAX_FIELDS:
            return GraphQLError(f"The operation selects more than {MAX_FIELDS} {FIELDS_MESSAGE}.")
        walk = _Walk(fragments)
        walk.visit(operation.selection_set, 1, frozenset())
        if walk.spreads > MAX_SPREADS:
            return GraphQLError(f"The operation has more than {MAX_SPREADS} {SPREADS_MESSAGE}.")
        if walk.cost > MAX_MERGE_COST:
            return GraphQLError(f"The operation {MERGE_MESSAGE} (cost over {MAX_MERGE_COST}).")
    return None


class _Results:
    """A bounded LRU cache, one table per schema (weakly held: a replaced schema takes its entries
    along) or one shared (`schema` None); `hits` counts the lookups that found. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self._lock = threading.Lock()
        self._by_schema: weakref.WeakKeyDictionary[Any, OrderedDict[Any, Any]] = weakref.WeakKeyDictionary()
        self._shared: OrderedDict[Any, Any] = OrderedDict()

    def _table(self, schema: Any) -> OrderedDict[Any, Any]:
        if schema is None:
            return self._shared
        return self._by_schema.setdefault(schema, OrderedDict())

    def get(self, schema: Any, key: Any) -> Any | None:
        with self._lock:
            table = self._table(schema)
            if key not in table:
                return None
            table.move_to_end(key)
            self.hits += 1
            return table[key]

    def holds(self, schema: Any, key: Any) -> bool:
        """Whether `key` is cached, without counting a hit or marking it used."""
        with self._lock:
            return key in self._table(schema)

    def put(self, schema: Any, key: Any, value: Any) -> None:
        with self._lock:
            table = self._table(schema)
            table[key] = value
            while len(table) > self.size:
                table.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._shared) + sum(len(table) for table in self._by_schema.values())


@dataclass(frozen=True)
class _Parsed:
    document: DocumentNode
    shape: Shape
    literals: tuple[ValueNode, ...]  # its Int, Float and String value nodes, in token order


@dataclass(frozen=True)
class _Valid:
    """A shape that passed every rule; at its first reuse, its `shapes.literal_types` (so documents
    of a shape seen once never pay for them)."""

    types: LiteralTypes | None = None
    recorded: bool = False


_PARSED = _Results(PARSE_CACHE)  # text -> _Parsed
_VALIDATED = _Results(VALIDATION_CACHE)  # (schema) text -> errors
SHAPES = _Results(SHAPE_CACHE)  # (schema) shape -> _Valid: every rule passed
# One per event loop (as anyio keeps its default thread limiter): a limiter wakes its waiters
# through its own loop's events, so two loops sharing one (`Gateway.execute` from two threads)
# waited forever on a wake-up sent from the other loop's thread.
_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("civicmesh_limits_limiter")


def parsed(text: str) -> DocumentNode | None:
    """The document `CheapLimits` parsed from `text`, if it is still cached (never parses)."""
    entry = _PARSED.get(None, text)
    return entry.document if entry is not None else None


def parsed_with_shape(text: str) -> tuple[DocumentNode, Shape, tuple[ValueNode, ...]] | None:
    """What `CheapLimits` parsed from `text` (document, shape, literal value nodes in token order),
    if it is still cached (never parses)."""
    entry = _PARSED.get(None, text)
    return (entry.document, entry.shape, entry.literals) if entry is not None else None


def shape_valid(schema: Any, document_shape: Shape) -> bool:
    """True if a document of this shape passed every rule on `schema` (graphql-core's schema),
    the rules being ones that answer every document of a shape alike (`shapes.shape_invariant`):
    a new document of the shape then needs ValuesOfCorrectType alone."""
    return SHAPES.holds(schema, document_shape)


async def in_thread(function: Any, *args: Any) -> Any:
    """`function(*args)` in a worker thread of the validation limiter (not the default pool, which
    DuckDB queries use: hostile documents queue here, never in front of reads)."""
    limiter = _LIMITER.get(None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(WORKER_THREADS)
        _LIMITER.set(limiter)
    return await anyio.to_thread.run_sync(function, *args, limiter=limiter)


class _CountingParser(Parser):
    """graphql-core's parser, counting while it parses: a response key written more than MAX_REPEATS
    times in one selection set, or more than MAX_SPREADS fragment spreads there, stop the parse
    at once (a field repeated 1,800 times is refused after its 21st copy, not after parsing all)."""

    def __init__(self, text: str, max_tokens: int | None) -> None:
        super().__init__(text, max_tokens=max_tokens)
        self._levels: list[tuple[Counter[str], list[int]]] = []
        self.start = self._lexer.token  # SOF: the lexer links every token it reads after it
        self.literals: list[ValueNode] = []

    def _refuse(self, node: Any, message: str) -> GraphQLSyntaxError:
        return GraphQLSyntaxError(self._lexer.source, node.loc.start if node.loc else 0, message)

    def parse_selection_set(self) -> SelectionSetNode:
        self._levels.append((Counter(), [0]))
        try:
            return super().parse_selection_set()
        finally:
            self._levels.pop()

    def parse_field(self) -> FieldNode:
        node = super().parse_field()
        keys = self._levels[-1][0]
        key = (node.alias or node.name).value
        keys[key] += 1
        if keys[key] > MAX_REPEATS:
            raise self._refuse(node, f"Field {key!r} {REPEATS_MESSAGE} ({MAX_REPEATS}).")
        return node

    def parse_int(self, is_const: bool = False) -> IntValueNode:
        self.literals.append(node := super().parse_int(is_const))
        return node

    def parse_float(self, is_const: bool = False) -> FloatValueNode:
        self.literals.append(node := super().parse_float(is_const))
        return node

    def parse_string_literal(self, is_const: bool = False) -> StringValueNode:
        self.literals.append(node := super().parse_string_literal(is_const))
        return node

    def parse_fragment(self) -> FragmentSpreadNode | InlineFragmentNode:
        node = super().parse_fragment()
        spreads = self._levels[-1][1]
        spreads[0] += 1
        if spreads[0] > MAX_SPREADS:
            raise self._refuse(node, f"More than {MAX_SPREADS} {SPREADS_MESSAGE}.")
        return node


def _parse(text: str, max_tokens: int | None) -> _Parsed:
    parser = _CountingParser(text, max_tokens)
    document = parser.parse_document()
    return _Parsed(document, shape(parser.start), tuple(parser.literals))


def _check(schema: Any, document: DocumentNode, parsed: _Parsed | None, rules: Any) -> list[GraphQLError]:
    """Step 3 and 4 (worker thread): for a shape that passed every rule on `schema` before, only
    ValuesOfCorrectType (`shapes.check_literals`, or the rule in full); otherwise the cheap
    refusal, then the full validation, remembering the shape if it passed. `parsed` is None for a
    document `on_parse` did not parse (no shape known): every rule."""
    if parsed is not None and shape_invariant(rules) and (valid := SHAPES.get(schema, parsed.shape)):
        return _values_of_correct_type(schema, parsed, valid)
    refused = refusal(document)
    if refused is not None:
        return [refused]
    errors = validate_document(schema, document, rules)
    if not errors and parsed is not None and shape_invariant(rules):  # else never read
        SHAPES.put(schema, parsed.shape, _Valid())
    return errors


def _values_of_correct_type(schema: Any, parsed: _Parsed, valid: _Valid) -> list[GraphQLError]:
    """ValuesOfCorrectType's answer for a document of a valid shape: its literals checked against
    the types the shape recorded (`shapes.check_literals`), or the rule in full."""
    if not valid.recorded:
        valid = _Valid(literal_types(schema, parsed.document, parsed.literals), recorded=True)
        SHAPES.put(schema, parsed.shape, valid)
    errors = check_literals(parsed.literals, valid.types) if valid.types is not None else None
    return errors if errors is not None else validate(schema, parsed.document, [ValuesOfCorrectTypeRule])


def _parse_and_check(
    text: str, max_tokens: int | None, schema: Any, rules: Any
) -> tuple[_Parsed, list[GraphQLError]]:
    """A text never seen: steps 2-4 in one trip to a worker thread (a document with new literals
    pays one thread switch, as its variable form pays none)."""
    parsed = _parse(text, max_tokens)
    return parsed, _check(schema, parsed.document, parsed, rules)


class CheapLimits(SchemaExtension):
    """Steps 1-3 of the module docstring, with the parsed document and the validation result cached
    by document text (in place of Strawberry's `ParserCache` and `ValidationCache`). On the event
    loop only the bracket count and the cache lookups run; parsing, the limits on the parsed
    document and the validation rules run in a worker thread, in one trip for a text never seen
    (Strawberry has added every validation rule in `on_operation`, before parsing)."""

    _parsed: _Parsed | None = None  # this request's document, once `on_parse` has it

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        text = context.query or ""
        if nesting(text) > MAX_NESTING:
            raise GraphQLError(f"The document has more than {MAX_NESTING} {NESTING_MESSAGE}.")
        entry = _PARSED.get(None, text)
        if entry is None:
            schema, max_tokens = context.schema._schema, context.parse_options.get("max_tokens")
            rules = context.validation_rules
            entry, errors = await in_thread(_parse_and_check, text, max_tokens, schema, rules)
            _PARSED.put(None, text, entry)
            _VALIDATED.put(schema, text, errors)
        context.graphql_document, self._parsed = entry.document, entry
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        if variable_values(context.variables) > MAX_VARIABLE_VALUES:
            message = f"The request has more than {MAX_VARIABLE_VALUES} {VARIABLES_MESSAGE}."
            context.pre_execution_errors = [GraphQLError(message)]
            yield
            return
        schema, text = context.schema._schema, context.query or ""
        errors = _VALIDATED.get(schema, text)
        if errors is None:
            document, parsed = context.graphql_document, self._parsed
            if parsed is not None and parsed.document is not document:
                parsed = None  # another document than the one parsed here: its shape is unknown
            errors = await in_thread(_check, schema, document, parsed, context.validation_rules)
            _VALIDATED.put(schema, text, errors)
        context.pre_execution_errors = errors
        yield
