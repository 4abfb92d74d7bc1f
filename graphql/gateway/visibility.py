"""Per-caller schemas: a product the caller may not `discover` does not exist for them — not in
the data fields, not in introspection, not in validation errors.

The schema built from the whole catalog only routes: `GatewaySchema.execute` asks `CallerSchemas`
for the schema of the caller's *discoverable set* and executes there. So a query for a hidden
product fails validation with exactly the message a never-existing field gets
("Cannot query field 'salaries' on type 'HrDepartment'."; a department with nothing discoverable
is absent from `Query` altogether), and `__schema` lists only what the caller may discover.

Cost: the set is computed once per (subject, policy version) from the engine's cached decisions
(microseconds); a schema is built once per distinct set and catalog state (one `CallerSchemas`
belongs to one catalog state, i.e. one catalog version) and then shared by every caller with the
same set. The policy version is deliberately not part of the schema key: a schema's shape depends
only on the catalog and the set, and the set is recomputed under each policy version, so a new
grant re-builds a schema only for callers whose set actually changed. Resolvers still decide every
access themselves; the schema only decides what can be named.

An attempt to name a hidden product is still an auditable event: it leaves a `deny` record for
that product in the access log (the caller's answer is unchanged).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import anyio.to_thread

from gateway.context import CatalogState, RequestContext, Touch
from gateway.limits import MAX_FIELDS, parsed
from gateway.naming import camel, pascal
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

log = logging.getLogger(__name__)

MAX_SCHEMAS = 64  # distinct discoverable sets held per catalog state
MAX_CALLERS = 50_000  # (subject, policy version) -> set memo entries

# Builds are CPU-bound and touch Strawberry's type machinery: one at a time per process.
_BUILD_LOCK = threading.Lock()

Names = frozenset[str]


class CallerSchemas:
    def __init__(self, state: CatalogState, full: Any, build: Callable[[CatalogState], Any]) -> None:
        self.state = state
        self.full = full
        self.all_names: Names = frozenset(state.entries)
        self._build_state = build
        self._lock = threading.Lock()
        self._schemas: OrderedDict[Names, Any] = OrderedDict()
        self._building: dict[Names, asyncio.Future[Any]] = {}
        self._sets: dict[tuple[str, str], Names] = {}
        self._policy: Any = None  # the engine of the last caller (to warm the next state's schemas)
        self.builds = 0
        # For the audit record of a hidden product named in a query: GraphQL names -> product.
        self._products: dict[str, dict[str, str]] = {}
        self._dept_types: dict[str, str] = {}
        for name, entry in state.entries.items():
            dept, product = entry.spec.department, entry.spec.product
            fields = self._products.setdefault(camel(dept), {})
            fields[camel(product)] = name
            fields[f"{camel(product)}Aggregate"] = name
            self._dept_types[f"{pascal(dept)}Department"] = camel(dept)

    # -- which products a caller may name --------------------------------------------------------

    def visible(self, ctx: Any) -> Names:
        """The products `ctx`'s caller may discover (empty without a request context: fail closed)."""
        if not isinstance(ctx, RequestContext):
            return frozenset()
        policy, subject = ctx.policy, ctx.subject
        self._policy = policy
        key = (subject, policy.version)
        names = self._sets.get(key)
        if names is not None:
            return names
        names = self._decide_set(policy, subject)
        if policy.version == key[1]:  # not reloaded meanwhile: safe to remember under this version
            if len(self._sets) >= MAX_CALLERS:
                self._sets.clear()
            self._sets[key] = names
        return names

    def _decide_set(self, policy: Any, subject: str) -> Names:
        return frozenset(
            name
            for name, entry in self.state.entries.items()
            if policy.decide(subject, entry.spec, "discover").allowed
        )

    # -- one schema per set ----------------------------------------------------------------------

    def _cached(self, names: Names) -> Any | None:
        if names == self.all_names:
            return self.full
        with self._lock:
            schema = self._schemas.get(names)
            if schema is not None:
                self._schemas.move_to_end(names)
            return schema

    def _build(self, names: Names) -> Any:
        schema = self._cached(names)
        if schema is not None:
            return schema
        subset = CatalogState(
            version=self.state.version,
            entries={n: e for n, e in self.state.entries.items() if n in names},
        )
        with _BUILD_LOCK:
            schema = self._cached(names)
            if schema is None:
                schema = self._build_state(subset)
                self.builds += 1
                with self._lock:
                    self._schemas[names] = schema
                    while len(self._schemas) > MAX_SCHEMAS:
                        self._schemas.popitem(last=False)
        return schema

    def schema_for_sync(self, ctx: Any) -> Any:
        names = self.visible(ctx)
        return self._cached(names) or self._build(names)

    async def schema_for(self, ctx: Any) -> Any:
        names = self.visible(ctx)
        schema = self._cached(names)
        if schema is not None:
            return schema
        # One build per set, however many callers with that set arrive meanwhile.
        future = self._building.get(names)
        if future is None:
            future = asyncio.ensure_future(anyio.to_thread.run_sync(self._build, names))
            self._building[names] = future
            future.add_done_callback(lambda _: self._building.pop(names, None))
        return await asyncio.shield(future)

    def warm_from(
        self, previous: CallerSchemas, limit: int = 8, subjects: int = 256
    ) -> threading.Thread | None:
        """After a publish, build in the background the schemas that the recent callers of the
        previous catalog state will need now (their sets recomputed over the new catalog), so
        they do not each pay the first build (~0.1-0.4 s)."""
        policy = previous._policy
        recent = list(dict.fromkeys(subject for subject, _ in reversed(list(previous._sets))))[:subjects]
        if policy is None or not recent:
            return None

        def warm() -> None:
            try:
                counts: dict[Names, int] = {}
                for subject in recent:
                    names = self._decide_set(policy, subject)
                    counts[names] = counts.get(names, 0) + 1
                ranked = sorted(counts, key=lambda n: -counts[n])
                for names in [n for n in ranked if n != self.all_names][:limit]:
                    self._build(names)
            except Exception:  # a request builds what it needs (and reports) anyway
                log.exception("warming the caller schemas failed")

        thread = threading.Thread(target=warm, name="civicmesh-schema-warm", daemon=True)
        thread.start()
        return thread

    # -- auditing attempts on hidden products ----------------------------------------------------

    def hidden_products(self, query: str | None, names: Names) -> list[str]:
        """Products the query names (as department/product fields) that exist but are not in
        `names`. Best effort over fragments; used only for the access log."""
        # The document the request parsed (off the event loop); none if it did not parse.
        document = parsed(query) if query else None
        if document is None:
            return []
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        found: list[str] = []
        budget = [MAX_FIELDS]  # a fragment fan-out expands exponentially: stop where the limit does

        def walk(selection_set: SelectionSetNode | None, dept: str | None, seen: frozenset[str]) -> None:
            budget[0] -= 1
            if budget[0] < 0:
                return
            for sel in selection_set.selections if selection_set else ():
                if isinstance(sel, FieldNode):
                    name = sel.name.value
                    if dept is not None:
                        product = self._products[dept].get(name)
                        if product is not None and product not in names and product not in found:
                            found.append(product)
                    elif name in self._products:
                        walk(sel.selection_set, name, seen)
                elif isinstance(sel, InlineFragmentNode):
                    cond = sel.type_condition.name.value if sel.type_condition else None
                    walk(sel.selection_set, dept or self._dept_types.get(cond or ""), seen)
                elif isinstance(sel, FragmentSpreadNode):
                    frag = fragments.get(sel.name.value)
                    if frag is not None and frag.name.value not in seen:
                        cond = frag.type_condition.name.value
                        walk(frag.selection_set, dept or self._dept_types.get(cond), seen | {frag.name.value})

        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                walk(definition.selection_set, None, frozenset())
        return found

    def audit_hidden(self, ctx: Any, query: str | None, names: Names) -> None:
        """Leave a `deny` record per hidden product a failed query named."""
        if not isinstance(ctx, RequestContext) or names == self.all_names:
            return
        for product in self.hidden_products(query, names):
            entry = self.state.entries[product]
            decision = ctx.policy.decide(ctx.subject, entry.spec, "discover")
            ctx.touch(Touch(product=product, action="read", decision=decision, error_code="BAD_USER_INPUT"))


def scrub_suggestions(errors: Iterable[Any] | None) -> None:
    """No "Did you mean ...?" in any message: suggestions name fields and types (graphql-core adds
    them for unknown fields, arguments, types, input fields and enum values)."""
    for error in errors or ():
        message = getattr(error, "message", None)
        if isinstance(message, str) and " Did you mean" in message:
            error.message = message.split(" Did you mean", 1)[0]
