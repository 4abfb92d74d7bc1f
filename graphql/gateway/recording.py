"""Recording a request before its response leaves: access-log records and lineage read events,
committed together (one transaction, group-committed with concurrent requests). If that fails the
caller gets HTTP 503 `UNAVAILABLE` instead of data: no log, no data."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.responses import JSONResponse, Response

from gateway import errors
from gateway.context import RequestContext, Touch, touch_record
from gateway.errors import GovernedError
from lineage.read_events import read_event_dict
from lineage.recorder import LineageRecorder
from meshcore.accesslog import AccessLog, AccessRecord

log = logging.getLogger(__name__)

LOG_DOWN = "The access log is unavailable, so no data can be served. Try again later."


def operation_hash(query: str) -> str:
    """SHA-256 of a GraphQL document with its whitespace normalised (the access log's
    `operation_hash`: which query ran, never its variables, which may hold personal data)."""
    return hashlib.sha256(" ".join(query.split()).encode()).hexdigest()


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> JSONResponse:
    """The body of every request refused as a whole: GraphQL's error shape and `extensions.code`.
    `request_id` (only for INTERNAL_SERVER_ERROR: the key to the server log; every response carries
    it as `X-Request-Id`) goes in `extensions.requestId`: other refusals stay identical bodies."""
    extensions: dict[str, Any] = {"code": code}
    if request_id:
        extensions["requestId"] = request_id
    body = {"data": None, "errors": [{"message": message, "extensions": extensions}]}
    return JSONResponse(body, status_code=status, headers=headers)


class Recorder:
    def __init__(self, access_log: AccessLog, lineage: LineageRecorder) -> None:
        self.access_log = access_log
        self.lineage = lineage

    async def finish_export(
        self, ctx: RequestContext, touch: Touch, status: int, fmt: str, error: str | None
    ) -> Response | None:
        """Log an export before its first byte. Returns the response to send instead of the
        stream (the error, or 503 if the log failed), or None to go ahead and stream."""
        common = {**ctx.log_fields, "status": status, "latency_ms": _since(ctx.started)}
        record = touch_record(common, touch, touch.error_code)
        events = []
        if touch.spec is not None and touch.decision is not None:
            events.append(
                read_event_dict(
                    ctx.request_id,
                    ctx.subject,
                    touch.spec,
                    touch.snapshot_id,
                    touch.columns_returned,
                    touch.decision,
                    touch.rows,
                    export_format=fmt,
                )
            )
        if not await self.commit([record], events, ctx):
            return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
        if error is not None:
            code = touch.error_code or errors.BAD_USER_INPUT
            return error_response(
                status, code, error, None, ctx.request_id if code == errors.INTERNAL else None
            )
        return None

    async def finish(
        self, ctx: RequestContext, response: Response, touches: list[Touch], request_error: str | None
    ) -> Response:
        """Log the request (one record per product touched, or one for the request) and only
        then let the response go; if the log cannot be written, send 503 instead."""
        common = {
            **ctx.log_fields,
            "status": response.status_code,
            "bytes": len(response.body),
            "latency_ms": _since(ctx.started),
        }
        if touches:
            records = [touch_record(common, t, request_error) for t in touches]
        else:
            records = [AccessRecord(**common, action="query", error_code=request_error)]
        request_id, subject = ctx.request_id, ctx.subject

        def events() -> list[Any]:  # built in the writer thread, off the event loop
            return [
                read_event_dict(
                    request_id, subject, t.spec, t.snapshot_id, t.columns_returned, t.decision, t.rows
                )
                for t in touches
                if t.spec is not None and t.decision is not None
            ]

        if not await self.commit(records, events, ctx):
            return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
        return response

    async def reject(
        self,
        fields: dict[str, Any],
        started: float,
        error: GovernedError,
        action: str = "query",
        ctx: RequestContext | None = None,
    ) -> Response:
        """One record for a request refused as a whole (`error.status`), then its error response."""
        status, code, message = error.status, error.code, str(error)
        record = AccessRecord(
            **fields,
            action=action,
            status=status,
            decision="deny" if status in (401, 403) else "none",
            reason=message,
            error_code=code,
            latency_ms=_since(started),
        )
        request_id = fields.get("request_id")
        if not await self.commit([record], None, ctx):
            return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
        headers = {"WWW-Authenticate": 'Bearer realm="civicmesh"'} if status == 401 else None
        return error_response(status, code, message, headers, request_id if code == errors.INTERNAL else None)

    async def commit(
        self,
        records: list[AccessRecord],
        events: list[Any] | Callable[[], list[Any]] | None = None,
        ctx: RequestContext | None = None,
        outbox_rows: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Durably record the request: access-log records and the lineage read events (outbox) in
        one transaction, group-committed with concurrent requests. False means: serve nothing.
        `ctx.recorded` is set first, so the pipeline never writes a second record for it.
        `outbox_rows` are events already prepared by `Outbox.prepare` (their uids are known).

        Events (or the function that builds them) are built and serialised in the worker thread
        that writes, before it joins the group commit: off the event loop, outside the write lock."""
        if ctx is not None:
            ctx.recorded = True
        outbox = self.lineage.outbox

        def write() -> None:
            built = events() if callable(events) else events
            also = None
            rows = [*(outbox_rows or ()), *(outbox.prepare(built) if built else ())]
            if rows:

                def also(conn: Any) -> None:
                    outbox.write(rows, conn)

            self.access_log.append(records, also)

        try:
            await anyio.to_thread.run_sync(write)
        except Exception:
            log.exception("access log write failed; failing closed")
            return False
        # No dispatcher.wake() here: waking it per request made it deliver one event at a time and
        # compete with requests for the GIL and the store; its poll (1 s) delivers reads in batches.
        return True


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
