"""`accessLog(...)`, `readersOfDerived(...)` and `rightsAsOf(...)`: for holders of the `audit` right.

An auditor with `audit` on every product (the global auditor) sees every record, including those
of no product (unauthenticated and rejected requests); an owner sees the records of the products
it may audit. `rightsAsOf(subject, at)` rebuilds what `subject` could do at `at` on the products the
caller may audit (`policies/history.py`). Reading any of it is itself logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt

import anyio.to_thread
import strawberry

from gateway.context import RequestContext, Touch
from gateway.errors import NOT_AVAILABLE, bad_input, forbidden, limit_exceeded
from gateway.types import BigInt, PageInfo, RowFilterInfo
from lineage.readers import DerivedRead, auditable_readers
from meshcore.audit.archive import ArchivedPeriod, refuse_archived
from meshcore.catalog import CatalogEntry
from policies.decision import ACTIONS
from policies.history import History, HistoryError

MAX_PAGE = 500


@strawberry.type
class MaskedColumn:
    column: str
    mask: str


@strawberry.type(description="One access-log record. Column names only: the log never holds values.")
class AccessLogEntry:
    seq: BigInt
    ts: str
    request_id: str
    subject: str | None
    roles: list[str]
    action: str
    product: str | None
    snapshot_id: str | None
    columns_requested: list[str]
    columns_returned: list[str]
    columns_masked: list[MaskedColumn]
    row_filter: RowFilterInfo | None
    decision: str
    rule: str | None
    reason: str
    policy_version: str | None
    rows: BigInt | None
    bytes: BigInt | None
    latency_ms: float | None
    client: str | None
    operation_hash: str | None
    status: int
    error_code: str | None
    prev_hash: str
    hash: str


@strawberry.type
class AccessLogConnection:
    total_count: int
    nodes: list[AccessLogEntry]
    page_info: PageInfo


def _entry(row: dict) -> AccessLogEntry:
    rf = row.get("row_filter")
    masked = sorted((row["columns_masked"] or {}).items())
    plain = {k: row[k] for k in AccessLogEntry.__annotations__ if k not in {"columns_masked", "row_filter"}}
    return AccessLogEntry(
        **plain,
        columns_masked=[MaskedColumn(column=c, mask=m) for c, m in masked],
        row_filter=RowFilterInfo(column=rf["column"], values=list(rf["values"])) if rf else None,
    )


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"log:{seq}".encode()).decode()


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not text.startswith("log:"):
            raise ValueError(text)
        return int(text[4:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad_input("Invalid cursor in `after`.") from exc


@strawberry.type(description="Who read a product derived from the one asked about.")
class DerivedReader:
    subject: str | None
    product: str
    reads: int
    rows: int
    first: str
    last: str
    masked_columns: list[str]


def _reader(read: DerivedRead) -> DerivedReader:
    return DerivedReader(
        subject=read.subject,
        product=read.product,
        reads=read.reads,
        rows=read.rows,
        first=read.first,
        last=read.last,
        masked_columns=read.masked_columns,
    )


@strawberry.type(description="A chained event that changed what was in force.")
class HistoryChange:
    seq: BigInt | None = strawberry.field(description="Access-log seq; null for a grant's expiry.")
    ts: str
    description: str


@strawberry.type(description="One right a subject held at the time asked, and what gave it.")
class RightAsOf:
    product: str
    action: str
    rule: str | None
    source: str | None = strawberry.field(
        description="policy.csv:LINE, access request #N or policies/rules.py"
    )
    masked_columns: list[str]
    row_filter: RowFilterInfo | None
    changed_by: HistoryChange | None = strawberry.field(
        description="The newest change at or before `at` after which this decision was what it was "
        "(null: so since the first recorded policy)."
    )


@strawberry.type(description="What a subject could do at a time, rebuilt from the access log.")
class RightsAsOf:
    subject: str
    at: dt.datetime
    policy_version: str
    policy_loaded_at: str
    policy_seq: BigInt
    grants: list[int] = strawberry.field(description="Access requests in force then.")
    rights: list[RightAsOf]


def _rights_as_of(
    ctx: RequestContext, entries: list[CatalogEntry], subject: str, at: dt.datetime
) -> RightsAsOf:
    """Blocking (reads the log): run in a worker thread."""
    history = History(ctx.access_log, ctx.access_log.engine)
    state = history.at(at)
    rights = []
    for entry in entries:
        snapshot = ctx.catalog.snapshot_as_of(entry.spec.name, at)
        spec = snapshot.spec if snapshot is not None else entry.spec
        for action in ACTIONS:
            decision, change = history.decide(subject, spec, action, at)
            if not decision.allowed:
                continue
            rf = decision.row_filter
            rights.append(
                RightAsOf(
                    product=spec.name,
                    action=action,
                    rule=decision.rule,
                    source=decision.source,
                    masked_columns=sorted(decision.masks),
                    row_filter=RowFilterInfo(column=rf.column, values=list(rf.values)) if rf else None,
                    changed_by=HistoryChange(
                        seq=change.seq or None, ts=change.ts, description=change.description
                    )
                    if change
                    else None,
                )
            )
    policy = state.policy
    return RightsAsOf(
        subject=subject,
        at=at,
        policy_version=policy.version or "",
        policy_loaded_at=policy.ts,
        policy_seq=policy.seq,
        grants=list(state.grants),
        rights=rights,
    )


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Who read `product` or anything derived from it (lineage downstream, joined with "
        "the access log), in [since, until). Covers the derived products you may audit."
    )
    async def readers_of_derived(
        self,
        info: strawberry.Info,
        product: str,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        depth: int = 10,
    ) -> list[DerivedReader] | None:
        ctx: RequestContext = info.context
        ctx.cacheable = False
        touch = Touch(product=product, action="audit", decision=None)
        try:
            entry = ctx.state.entries.get(product)
            if entry is None or not ctx.decide(entry, "discover").allowed:
                raise forbidden(NOT_AVAILABLE)
            touch.decision = ctx.decide(entry, "audit")
            if not touch.decision.allowed:
                raise forbidden(touch.decision.reason or "You may not audit this product.")
            names = await anyio.to_thread.run_sync(ctx.lineage_graph.derived_products, product, depth)
            entries = ctx.state.entries

            def may_audit(name: str) -> bool:
                return name in entries and ctx.decide(entries[name], "audit").allowed

            try:
                _, readers = await anyio.to_thread.run_sync(
                    auditable_readers, ctx.access_log, names | {product}, may_audit, since, until
                )
            except ArchivedPeriod as exc:
                raise bad_input(str(exc)) from exc
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        touch.rows = sum(r.reads for r in readers)
        ctx.touch(touch)
        return [_reader(r) for r in readers]

    @strawberry.field(
        description="What `subject` could do at `at` on the products you may audit: the policy the "
        "gateway had loaded then and the grants in force then, from the access log."
    )
    async def rights_as_of(self, info: strawberry.Info, subject: str, at: dt.datetime) -> RightsAsOf | None:
        ctx: RequestContext = info.context
        ctx.cacheable = False
        touch = Touch(product=None, action="audit", decision=None)
        try:
            if at.tzinfo is None:
                raise bad_input("`at` needs a time zone (e.g. 2026-11-01T00:00:00Z).")
            entries = [e for e in ctx.state.entries.values() if ctx.decide(e, "audit").allowed]
            if not entries:
                raise forbidden("You hold the audit right on no product.")
            try:
                result = await anyio.to_thread.run_sync(_rights_as_of, ctx, entries, subject, at)
            except HistoryError as exc:
                raise bad_input(str(exc)) from exc
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        touch.rows = len(result.rights)
        ctx.touch(touch)
        return result

    @strawberry.field(
        description="Access-log records you may audit, oldest first. A period reaching into archived "
        "records (`civicmesh audit archive`) is refused with BAD_USER_INPUT naming the archived span."
    )
    async def access_log(
        self,
        info: strawberry.Info,
        subject: str | None = None,
        product: str | None = None,
        decision: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        first: int | None = 100,
        after: str | None = None,
    ) -> AccessLogConnection | None:
        ctx: RequestContext = info.context
        ctx.cacheable = False  # the log grows with every request
        touch = Touch(product=product, action="audit", decision=None)
        try:
            entries = list(ctx.state.entries.values())
            auditable = {e.spec.name for e in entries if ctx.decide(e, "audit").allowed}
            if not auditable:
                raise forbidden("You hold the audit right on no product.")
            if product is not None and product not in auditable:
                raise forbidden("You may not audit this product, or it does not exist.")
            limit = 100 if first is None else first
            if limit < 0 or limit > MAX_PAGE:
                raise limit_exceeded(f"`first` must be between 0 and {MAX_PAGE}.")
            scope = None if len(auditable) == len(entries) else auditable
            try:
                await anyio.to_thread.run_sync(refuse_archived, ctx.access_log, since)
            except ArchivedPeriod as exc:
                raise bad_input(str(exc)) from exc
            rows, total = await anyio.to_thread.run_sync(
                lambda: ctx.access_log.search(
                    products=scope,
                    subject=subject,
                    product=product,
                    decision=decision,
                    since=since,
                    until=until,
                    after_seq=_after(after),
                    limit=limit + 1,
                )
            )
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        has_next = len(rows) > limit
        rows = rows[:limit]
        touch.rows = len(rows)
        ctx.touch(touch)
        return AccessLogConnection(
            total_count=total,
            nodes=[_entry(r) for r in rows],
            page_info=PageInfo(
                has_next_page=has_next, end_cursor=_cursor(int(rows[-1]["seq"])) if rows else after
            ),
        )
