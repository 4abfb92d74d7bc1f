"""`GET /exports/{department.product}.{csv|json|parquet}?where=...&limit=...&asOf=...`

The same governance as GraphQL reads, with the `export` action: masks and row filter from the
export decision, the same `where` (as JSON, GraphQL field names). The access-log record (with the
row count) and the lineage event are committed before the first byte; the body is streamed.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import pyarrow as pa
import pyarrow.parquet as pq
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from civicmesh.catalog import CatalogEntry
from gateway import errors
from gateway.auth import AuthError, Principal, authenticate
from gateway.context import RequestContext, Touch
from gateway.errors import NOT_AVAILABLE, GovernedError, bad_input, forbidden, limit_exceeded
from gateway.naming import camel
from gateway.query import PageQuery
from gateway.reads import serve_snapshot

if TYPE_CHECKING:
    from gateway.app import Gateway

MEDIA_TYPES = {"csv": "text/csv", "json": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}
MAX_EXPORT_ROWS = 5_000_000
BATCH_ROWS = 10_000
_OPS = {"eq": "eq", "ne": "ne", "in": "in_", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte"}
_OPS.update({"between": "between", "isNull": "is_null", "contains": "contains", "startsWith": "starts_with"})


def where_from_json(text: str | None, entry: CatalogEntry) -> dict[str, Any] | None:
    """The GraphQL `where` shape as JSON -> the structure PageQuery takes (column names)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise bad_input("`where` is not valid JSON.") from exc
    by_field = {camel(c.name): c.name for c in entry.spec.columns}

    def convert(node: Any) -> dict[str, Any]:
        if not isinstance(node, dict):
            raise bad_input("`where` must be an object.")
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("and", "or"):
                out[key] = [convert(v) for v in value] if isinstance(value, list) else [convert(value)]
            elif key == "not":
                out[key] = convert(value)
            elif key in by_field and isinstance(value, dict):
                unknown = set(value) - set(_OPS)
                if unknown:
                    raise bad_input(f"Unknown operator(s) {sorted(unknown)}.")
                out[by_field[key]] = {_OPS[op]: v for op, v in value.items()}
            else:
                raise bad_input(f"Unknown field {key!r} in `where`.")
        return out

    return convert(data)


class _Sink:
    """A write-only file for pyarrow that hands written bytes to the response as they come."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _encoder(fmt: str, columns: list[str]) -> tuple[Any, Any]:
    """(encode(batch) -> bytes, finish() -> bytes) for one export format."""
    if fmt == "csv":
        state = {"header": True}

        def encode_csv(batch: pa.RecordBatch) -> bytes:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if state["header"]:
                writer.writerow(columns)
                state["header"] = False
            writer.writerows(zip(*(col.to_pylist() for col in batch.columns), strict=True))
            return buffer.getvalue().encode()

        return encode_csv, lambda: b"" if not state["header"] else (",".join(columns) + "\r\n").encode()
    if fmt == "json":

        def encode_json(batch: pa.RecordBatch) -> bytes:
            return "".join(json.dumps(row, default=str) + "\n" for row in batch.to_pylist()).encode()

        return encode_json, lambda: b""
    sink = _Sink()
    holder: dict[str, Any] = {}

    def encode_parquet(batch: pa.RecordBatch) -> bytes:
        if "writer" not in holder:
            holder["writer"] = pq.ParquetWriter(sink, batch.schema, compression="zstd")
        holder["writer"].write_batch(batch)
        return sink.take()

    def finish_parquet() -> bytes:
        if "writer" in holder:
            holder["writer"].close()
        return sink.take()

    return encode_parquet, finish_parquet


async def handle_export(gw: Gateway, request: Request) -> Response:
    started = time.perf_counter()
    client = request.client.host if request.client else None
    common: dict[str, Any] = {"request_id": uuid.uuid4().hex, "client": client}
    name, _, fmt = request.path_params["target"].rpartition(".")
    try:
        principal = authenticate(gw.settings, request.headers.get("authorization"))
    except AuthError as exc:
        return await gw.recorder.reject(common, started, 401, errors.UNAUTHENTICATED, str(exc))
    common["subject"] = principal.subject
    common["roles"] = [f"{r}@{d}" for r, d in gw.policy.roles(principal.subject)]
    await gw.refresh()
    touch = Touch(product=name or None, action="export", decision=None)
    try:
        if fmt not in MEDIA_TYPES:
            raise bad_input(f"Unknown export format {fmt!r}; use one of {sorted(MEDIA_TYPES)}.")
        prepared = await _prepare(gw, request, principal, name, fmt, touch)
    except GovernedError as exc:
        touch.error_code = exc.code
        status = {"FORBIDDEN": 403, "UNAVAILABLE": 503}.get(exc.code, 400)
        return await gw.recorder.finish_export(common, started, principal, touch, status, fmt, str(exc))
    sql, params, columns = prepared
    failed = await gw.recorder.finish_export(common, started, principal, touch, 200, fmt, None)
    if failed is not None:
        return failed  # the log could not be written: nothing is streamed
    return StreamingResponse(
        _stream(gw, sql, params, fmt, columns),
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


async def _prepare(
    gw: Gateway, request: Request, principal: Principal, name: str, fmt: str, touch: Touch
) -> tuple[str, list[Any], list[str]]:
    entry = gw.state.entries.get(name)
    discover = gw.policy.decide(principal.subject, entry.spec, "discover") if entry else None
    touch.decision = discover
    if entry is None or discover is None or not discover.allowed:
        raise forbidden(NOT_AVAILABLE)
    touch.spec = entry.spec
    decision = gw.policy.decide(principal.subject, entry.spec, "export")
    touch.decision = decision
    if not decision.allowed:
        raise forbidden(decision.reason or "You may not export this product.")
    limit_text = request.query_params.get("limit")
    limit = int(limit_text) if limit_text and limit_text.isdigit() else MAX_EXPORT_ROWS
    if limit > MAX_EXPORT_ROWS:
        raise limit_exceeded(f"An export holds at most {MAX_EXPORT_ROWS} rows.")
    as_of_text = request.query_params.get("asOf")
    try:
        as_of = datetime.fromisoformat(as_of_text) if as_of_text else None
    except ValueError as exc:
        raise bad_input("`asOf` must be an ISO-8601 timestamp.") from exc
    ctx = RequestContext(
        settings=gw.settings,
        principal=principal,
        policy=gw.policy,
        duck=gw.duck,
        catalog=gw.catalog,
        access_log=gw.access_log,
        state=gw.state,
        request_id="",
        client=None,
    )
    snap, served = await serve_snapshot(ctx, entry, decision, touch, None, as_of)
    columns = list(served.columns)
    query = PageQuery(
        spec=snap.spec,
        path=str(Path(snap.path).resolve()),
        columns=columns,
        masks=served.masks,
        row_filter=touch.row_filter,
        where=where_from_json(request.query_params.get("where"), entry),
        limit=limit,
    )
    sql, params = query.page_sql()
    params[-2] = limit  # page_sql asks for one extra row to detect a next page; an export does not
    count_sql, count_params = query.count_sql()
    count = (await gw.duck.run_async(count_sql, count_params)).rows[0][0]
    touch.rows = min(int(count), limit)
    touch.columns_requested = touch.columns_returned = columns
    return sql, params, columns


async def _stream(
    gw: Gateway, sql: str, params: list[Any], fmt: str, columns: list[str]
) -> AsyncIterator[bytes]:
    cursor, reader = await anyio.to_thread.run_sync(gw.duck.open_reader, sql, params, BATCH_ROWS)
    encode, finish = _encoder(fmt, columns)
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
