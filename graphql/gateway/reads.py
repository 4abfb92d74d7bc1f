"""The governed read of one product page: decide, pick the snapshot, build SQL, run, record.

The decision is taken once per (subject, product, action, policy version) — the engine caches
it — and then applied in SQL (row filter as bound parameters, masks as expressions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread

from gateway.context import RequestContext, Touch
from gateway.duck import resolved
from gateway.errors import NOT_AVAILABLE, UNAVAILABLE, GovernedError, bad_input, forbidden, limit_exceeded
from gateway.integrity import ensure_intact
from gateway.naming import camel
from gateway.query import Cursor, PageQuery
from gateway.selection import below, selected
from meshcore.catalog import CatalogEntry, Snapshot
from policies.asof import decide_as_of
from policies.decision import Decision
from policies.history import HistoryError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Wanted:
    """What the query selected under the product field (decides which SQL runs)."""

    columns: list[str]  # node columns, by column name
    nodes: bool
    total_count: bool
    page_info: bool


def wanted_from(info: Any, column_by_field: Mapping[str, str]) -> Wanted:
    """What every selection of this field asks for: a product field written twice under one
    response key (`serviceRequests { nodes { a } } serviceRequests { nodes { b } }`) is one field
    whose selections merge (GraphQL spec §5.3.2), so both sets of columns are read; a column that
    `@skip`/`@include` leave out is not (`selection.py`)."""
    fields = selected(info)
    below_nodes = [sub.name for field in fields if field.name == "nodes" for sub in below(info, field)]
    return wanted([field.name for field in fields], below_nodes, column_by_field)


def wanted(names: Iterable[str], below_nodes: Iterable[str], column_by_field: Mapping[str, str]) -> Wanted:
    """The `Wanted` of a rows field whose selection names the fields `names` and, under `nodes`,
    the row fields `below_nodes` (GraphQL field names, in the order written): the columns in that
    order, each once."""
    columns: list[str] = []
    for name in below_nodes:
        column = column_by_field.get(name)
        if column is not None and column not in columns:
            columns.append(column)
    selected_names = set(names)
    return Wanted(
        columns=columns,
        nodes="nodes" in selected_names,
        total_count="totalCount" in selected_names,
        page_info="pageInfo" in selected_names,
    )


async def snapshot_for(
    ctx: RequestContext, entry: CatalogEntry, cursor: Cursor | None, as_of: datetime | None
) -> Snapshot:
    name = entry.spec.name
    if cursor is not None:
        snap = await anyio.to_thread.run_sync(ctx.catalog.snapshot, cursor.snapshot_id)
        if snap is None or snap.product != name:
            raise bad_input("Invalid cursor in `after`.")
        if snap.removed:  # past retention: its file may be gone, which is not a broken snapshot
            raise GovernedError(
                f"The snapshot of {name} this cursor pages through has expired; start again without `after`.",
                UNAVAILABLE,
            )
        if not snap.servable:
            raise GovernedError(
                f"The snapshot of {name} this cursor pages through was {snap.status}; "
                "start again without `after`.",
                UNAVAILABLE,
            )
        return snap
    if as_of is not None:
        snap = await anyio.to_thread.run_sync(ctx.catalog.snapshot_as_of, name, as_of)
        if snap is None:
            raise bad_input("No snapshot of this product was published at or before `asOf`.")
        return snap
    if entry.current is None:
        raise GovernedError("This product has no published snapshot yet.", UNAVAILABLE)
    return entry.current


@dataclass(frozen=True)
class Served:
    """What a read or an export of one snapshot may return: the snapshot's columns (in its order)
    and the mask kind applied to each masked one (column -> `redact|hash|partial|generalize`)."""

    columns: tuple[str, ...]
    masks: dict[str, str]


def served_columns(
    ctx: RequestContext, entry: CatalogEntry, snap: Snapshot, decision: Decision | None
) -> Served:
    """The one rule for what is served from `snap` under `decision` (`read` or `export`): GraphQL
    rows, aggregates and exports all call it, `asOf` and cursors included.

    Masks: the decision's (the current spec's PII columns, unless the caller holds `read_pii`),
    plus every column the *snapshot's own* spec declared PII: an older snapshot may hold PII
    columns the current spec dropped or no longer declares, and without `read_pii` those are
    masked with the snapshot's mask kind (the current spec's kind wins where both declare one).
    `decision` None means governance is off (benchmark only): nothing is masked."""
    present = tuple(name for name, _ in snap.schema)
    if decision is None:
        return Served(present, {})
    masks = dict(decision.masks)
    older = {c: kind for c, kind in snap.spec.pii_columns.items() if c not in masks}
    if older and not ctx.decide(entry, "read_pii").allowed:
        masks = {**older, **masks}
    return Served(present, {c: kind for c, kind in masks.items() if c in present})


async def serve_snapshot(
    ctx: RequestContext,
    entry: CatalogEntry,
    decision: Decision | None,
    touch: Touch,
    cursor: Cursor | None,
    as_of: datetime | None,
) -> tuple[Snapshot, Served]:
    """Pick the snapshot to serve and decide its columns and masks (for every read path and
    exports), after checking its file against the published checksum (UNAVAILABLE if it fails).
    Fills `touch` with the snapshot id, the masks and the row filter."""
    snap = await snapshot_for(ctx, entry, cursor, as_of)
    touch.snapshot_id = snap.id
    await ensure_intact(ctx.duck.checks, ctx.catalog, snap)
    at = await _rights_time(ctx, entry, snap, cursor, as_of)
    if at is not None and decision is not None:  # rights in force then apply too, if stricter
        decision = touch.decision = await _as_of(ctx, snap, decision, at)
    served = served_columns(ctx, entry, snap, decision)
    touch.masks = served.masks
    touch.row_filter = decision.row_filter if decision is not None else None
    return snap, served


async def _rights_time(
    ctx: RequestContext, entry: CatalogEntry, snap: Snapshot, cursor: Cursor | None, as_of: datetime | None
) -> datetime | None:
    """When the rights that also govern reading `snap` were in force (None: today's alone).

    Reading a snapshot that is no longer current is reading the past, however it was reached:
    `asOf` names the time; a cursor (not secret: anyone can write one) into an old snapshot
    without `asOf` reads it as of the last moment it was current; `asOf` with a cursor must
    select the cursor's snapshot, or the rights of one time would govern another time's data."""
    if as_of is not None:
        if cursor is not None:
            selected = await anyio.to_thread.run_sync(ctx.catalog.snapshot_as_of, snap.product, as_of)
            if selected is None or selected.id != snap.id:
                raise bad_input("The cursor in `after` pages another snapshot than `asOf` selects.")
        return as_of
    if cursor is not None and (entry.current is None or entry.current.id != snap.id):
        return await anyio.to_thread.run_sync(ctx.catalog.last_current, snap)
    return None


async def _as_of(ctx: RequestContext, snap: Snapshot, decision: Decision, at: datetime) -> Decision:
    """Today's decision (`read` or `export`) combined with the one in force at `at` (for the product
    as published in the snapshot read); `extensions.governance.<product>.asOf` says what was applied."""
    try:
        combined, note = await anyio.to_thread.run_sync(
            decide_as_of, ctx.access_log, ctx.subject, snap.spec, decision.action, decision, at
        )
    except HistoryError as exc:  # the log cannot be trusted about then: no answer
        raise GovernedError(
            f"The rights in force at `asOf` cannot be established: {exc}", UNAVAILABLE
        ) from exc
    ctx.governance.setdefault(snap.spec.name, {"snapshotIds": []})["asOf"] = note
    if not combined.allowed:
        raise forbidden(combined.reason)
    return combined


def record_failure(ctx: RequestContext, touch: Touch, exc: Exception) -> None:
    touch.error_code = exc.code if isinstance(exc, GovernedError) else "INTERNAL_SERVER_ERROR"
    ctx.touch(touch)


def _page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0:
        raise bad_input("`first` must not be negative.")
    if first > MAX_PAGE_SIZE:
        raise limit_exceeded(f"`first` may be at most {MAX_PAGE_SIZE}.")
    return first


async def authorize_read(
    ctx: RequestContext, entry: CatalogEntry, touch: Touch, cursor: Cursor | None, as_of: datetime | None
) -> tuple[Snapshot, dict[str, str]]:
    """Discover, then read; pick the snapshot; return it with the masks to apply. Fills `touch`."""
    discover = ctx.decide(entry, "discover")
    touch.decision = discover
    if not discover.allowed:
        raise forbidden(NOT_AVAILABLE)
    decision = ctx.decide(entry, "read")
    touch.decision = decision
    if not decision.allowed:
        raise forbidden(decision.reason or "You may not read this product.")
    snap, served = await serve_snapshot(ctx, entry, decision, touch, cursor, as_of)
    return snap, served.masks


async def _run_page(ctx: RequestContext, query: PageQuery, wanted: Wanted) -> tuple[Any, Any]:
    """(the page's result or None, the count's result or None), run concurrently in DuckDB."""
    need_page = wanted.nodes or wanted.page_info
    page_sql = query.page_sql() if need_page else None  # built first: input errors surface now
    count_sql = query.count_sql() if wanted.total_count else None
    page_task = ctx.duck.run_async(*page_sql) if page_sql else None
    count_task = ctx.duck.run_async(*count_sql) if count_sql else None
    results = await asyncio.gather(*(t for t in (page_task, count_task) if t is not None))
    page = results[0] if page_task is not None else None
    count = results[-1] if count_task is not None else None
    return page, count


def _page_nodes(page: Any, columns: list[str], limit: int) -> tuple[list[dict[str, Any]], bool, Any]:
    """(nodes, has a next page, the last row's sort keys) from a page query's result (None: none)."""
    if page is None:
        return [], False, None
    rows = page.rows
    has_next = len(rows) > limit
    rows = rows[:limit]
    # Keyed by GraphQL field name: graphql-core resolves row fields straight from the dict;
    # zip() stops at the output columns, leaving out the sort key values that follow them.
    keys = [camel(c) for c in columns]
    nodes = [dict(zip(keys, row, strict=False)) for row in rows]
    last_keys = rows[-1][len(columns) :] if rows and len(page.columns) > len(columns) else None
    return nodes, has_next, last_keys


async def read_page(
    ctx: RequestContext,
    entry: CatalogEntry,
    wanted: Wanted,
    where: Mapping[str, Any] | None,
    order_by: Sequence[tuple[str, str]],
    first: int | None,
    after: str | None,
    as_of: datetime | None,
) -> dict[str, Any]:
    spec = entry.spec
    touch = Touch(
        product=spec.name, action="read", decision=None, spec=spec, columns_requested=list(wanted.columns)
    )
    try:
        limit = _page_size(first)
        cursor = Cursor.decode(after) if after else None
        snap, masks = await authorize_read(ctx, entry, touch, cursor, as_of)
        present = {name for name, _ in snap.schema}
        columns = [c for c in wanted.columns if c in present]
        path = resolved(str(snap.path))
        query = PageQuery(
            spec=snap.spec,
            path=path,
            table=ctx.duck.source(path, snap.byte_size),
            file_order=await ctx.duck.file_order(path, snap.spec.key),
            columns=columns,
            masks=masks,
            row_filter=touch.row_filter,
            where=where,
            order_by=order_by,
            limit=limit,
            offset=cursor.offset if cursor else 0,
            after=cursor,
            with_keys=wanted.page_info,
        )
        page, count = await _run_page(ctx, query, wanted)
    except Exception as exc:
        record_failure(ctx, touch, exc)
        raise

    nodes, has_next, last_keys = _page_nodes(page, columns, limit)
    offset = query.offset + len(nodes)
    touch.rows = len(nodes)
    touch.columns_returned = columns if wanted.nodes else []
    ctx.touch(touch)
    return {
        "total_count": int(count.rows[0][0]) if count is not None else None,
        "nodes": nodes,
        "page_info": {
            "has_next_page": has_next,
            "end_cursor": query.end_cursor(snap.id, last_keys, offset).encode() if nodes else (after or None),
        },
        "snapshot": {"id": snap.id, "published_at": snap.published_at, "row_count": snap.row_count},
    }
