"""`accessLog(...)`: the access log for holders of the `audit` right.

An auditor with `audit` on every product (the global auditor) sees every record, including those
of no product (unauthenticated and rejected requests); an owner sees the records of the products
it may audit. Reading the log is itself logged.
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


def _readers(rows: list[dict]) -> list[DerivedReader]:
    acc: dict[tuple[str | None, str], dict] = {}
    for row in rows:
        item = acc.setdefault(
            (row["subject"], row["product"]),
            {"reads": 0, "rows": 0, "first": row["ts"], "last": row["ts"], "masked": set()},
        )
        item["reads"] += 1
        item["rows"] += row["rows"] or 0
        item["last"] = row["ts"]
        item["masked"] |= set(row["columns_masked"] or {})
    return [
        DerivedReader(
            subject=s,
            product=p,
            reads=i["reads"],
            rows=i["rows"],
            first=i["first"],
            last=i["last"],
            masked_columns=sorted(i["masked"]),
        )
        for (s, p), i in sorted(acc.items(), key=lambda kv: (kv[0][1], kv[0][0] or ""))
    ]


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
            # Only products the caller may audit: the others are neither shown nor named.
            derived = sorted(
                name
                for name in names | {product}
                if name in ctx.state.entries and ctx.decide(ctx.state.entries[name], "audit").allowed
            )
            rows, _ = await anyio.to_thread.run_sync(
                lambda: ctx.access_log.search(
                    products=derived, since=since, until=until, decision="allow", limit=1_000_000
                )
            )
        except Exception as exc:
            touch.error_code = getattr(exc, "code", "INTERNAL_SERVER_ERROR")
            ctx.touch(touch)
            raise
        touch.rows = len(rows)
        ctx.touch(touch)
        return _readers([r for r in rows if r["action"] in ("read", "export")])

    @strawberry.field(description="Access-log records you may audit, oldest first.")
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
