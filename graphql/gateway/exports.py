"""`GET /exports/{department.product}.{csv|json|parquet}?where=&orderBy=&limit=&asOf=`

The same governance as GraphQL reads, with the `export` action: masks and row filter from the
export decision; `where` and `orderBy` are the GraphQL arguments as JSON (GraphQL field names),
validated by the same code (`arguments.py`). The access-log record (with the row count) and the
lineage event are committed before the first byte; the body is streamed in the format's encoding
(`export_formats.py`: CSV safe to open in a spreadsheet). Authentication and the request id come
from the request pipeline (`pipeline.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import errors
from gateway.arguments import read_arguments
from gateway.context import RequestContext, Touch
from gateway.duck import DuckPool, resolved
from gateway.errors import NOT_AVAILABLE, GovernedError, bad_input, forbidden, limit_exceeded
from gateway.export_formats import encoder
from gateway.pipeline import request_context
from gateway.query import PageQuery
from gateway.reads import serve_snapshot

log = logging.getLogger(__name__)

MEDIA_TYPES = {"csv": "text/csv", "json": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
PARAMETERS = ("where", "orderBy", "limit", "asOf")
MAX_EXPORT_ROWS = 5_000_000
BATCH_ROWS = 10_000


async def handle_export(request: Request) -> Response:
    """The export route (behind the pipeline): decide, record, then stream."""
    ctx = request_context(request)
    assert ctx.recorder is not None  # the pipeline builds every context with the recorder
    name, _, fmt = request.path_params["target"].rpartition(".")
    touch = Touch(product=name or None, action="export", decision=None)
    try:
        if fmt not in MEDIA_TYPES:
            raise bad_input(f"Unknown export format {fmt!r}; use one of {sorted(MEDIA_TYPES)}.")
        sql, params, columns = await _prepare(ctx, request, name, touch)
    except Exception as exc:  # governed refusals; and a damaged snapshot or a bug, logged here
        if not isinstance(exc, GovernedError):
            log.exception("export of %s failed (request %s)", name, ctx.request_id)
            exc = errors.internal(ctx.request_id)
        touch.error_code = exc.code
        failed = await ctx.recorder.finish_export(ctx, touch, exc.status, fmt, str(exc))
        assert failed is not None
        return failed
    failed = await ctx.recorder.finish_export(ctx, touch, 200, fmt, None)
    if failed is not None:
        return failed  # the log could not be written: nothing is streamed
    return StreamingResponse(
        _stream(ctx.duck, sql, params, fmt, columns),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


def _limit(text: str | None) -> int:
    """`limit` in ASCII digits (`str.isdigit` also takes `²` and `٣`, which `int` refuses or reads
    as other digits); a number longer than the largest limit is over it, whatever its digits."""
    if text is None or text == "":
        return MAX_EXPORT_ROWS
    if not (text.isascii() and text.isdigit()):
        raise bad_input("`limit` must be a whole number of rows.")
    if len(text.lstrip("0")) > len(str(MAX_EXPORT_ROWS)) or int(text) > MAX_EXPORT_ROWS:
        raise limit_exceeded(f"An export holds at most {MAX_EXPORT_ROWS} rows.")
    return int(text)


async def _prepare(
    ctx: RequestContext, request: Request, name: str, touch: Touch
) -> tuple[str, list[Any], list[str]]:
    entry = ctx.state.entries.get(name)
    discover = ctx.decide(entry, "discover") if entry else None
    touch.decision = discover
    if entry is None or discover is None or not discover.allowed:
        raise forbidden(NOT_AVAILABLE)
    touch.spec = entry.spec
    decision = ctx.decide(entry, "export")
    touch.decision = decision
    if not decision.allowed:
        raise forbidden(decision.reason or "You may not export this product.")
    unknown = sorted(set(request.query_params) - set(PARAMETERS))
    if unknown:
        raise bad_input(f"Unknown parameter(s) {unknown}; an export takes {list(PARAMETERS)}.")
    limit = _limit(request.query_params.get("limit"))
    arguments = read_arguments(ctx.schema, name, request.query_params)
    snap, served = await serve_snapshot(ctx, entry, decision, touch, None, arguments.as_of)
    columns = list(served.columns)
    path = resolved(str(snap.path))
    query = PageQuery(
        spec=snap.spec,
        path=path,
        file_order=await ctx.duck.file_order(path, snap.spec.key),
        columns=columns,
        masks=served.masks,
        row_filter=touch.row_filter,
        where=arguments.where,
        order_by=arguments.order_by,
        limit=limit,
    )
    sql, params = query.page_sql()
    params[-2] = limit  # page_sql asks for one extra row to detect a next page; an export does not
    count_sql, count_params = query.count_sql()
    count = (await ctx.duck.run_async(count_sql, count_params)).rows[0][0]
    touch.rows = min(int(count), limit)
    touch.columns_requested = touch.columns_returned = columns
    return sql, params, columns


async def _stream(
    duck: DuckPool, sql: str, params: list[Any], fmt: str, columns: list[str]
) -> AsyncIterator[bytes]:
    cursor, reader = await anyio.to_thread.run_sync(duck.open_reader, sql, params, BATCH_ROWS)
    encode, finish = encoder(fmt, columns)
    try:
        while True:
            batch = await anyio.to_thread.run_sync(_next_batch, reader)
            if batch is None:
                break
            chunk = await anyio.to_thread.run_sync(encode, batch)
            if chunk:
                yield chunk
        tail = finish()
        if tail:
            yield tail
    finally:
        cursor.close()


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None
