"""A limit Strawberry does not ship: fields per operation with fragments expanded.

Token and depth limits bound the text and its nesting, but fragments can repeat the same fields
many times over (`...A ...A` in B, `...B ...B` in C, ...), which costs validation and execution
time out of proportion to the document's size.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

MAX_FIELDS = 2000
LIMIT_MESSAGE = "fields with fragments expanded, which is not allowed"


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


def max_fields_rule(max_fields: int = MAX_FIELDS) -> type[ValidationRule]:
    class MaxFieldsRule(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            document = self.context.document
            fragments = {
                d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            count = _count(node.selection_set, fragments, {}, frozenset(), max_fields)
            if count > max_fields:
                self.report_error(
                    GraphQLError(f"The operation selects more than {max_fields} {LIMIT_MESSAGE}.")
                )

    return MaxFieldsRule
