"""`POST /api/v1/lineage`: OpenLineage events from other producers in the city.

Authentication, the body-size limit and the access-log record are the gateway's; validation and
storage are `lineage.receiver`'s (the event lands in the outbox and is delivered like ours).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from civicmesh.accesslog import AccessRecord
from gateway import errors
from gateway.auth import AuthError, authenticate
from gateway.http_body import BodyTooLarge, read_body
from gateway.recording import LOG_DOWN, error_response
from lineage.receiver import MAX_EVENT_BYTES, InvalidEvent, accept

if TYPE_CHECKING:
    from gateway.app import Gateway


async def handle_lineage_post(gw: Gateway, request: Request) -> Response:
    started = time.perf_counter()
    client = request.client.host if request.client else None
    common: dict[str, Any] = {"request_id": uuid.uuid4().hex, "client": client}
    try:
        body = await read_body(request, MAX_EVENT_BYTES)
    except BodyTooLarge:
        return await gw.recorder.reject(common, started, 413, errors.LIMIT_EXCEEDED, "Event too large.")
    try:
        principal = authenticate(gw.settings, request.headers.get("authorization"))
    except AuthError as exc:
        return await gw.recorder.reject(common, started, 401, errors.UNAUTHENTICATED, str(exc))
    common["subject"] = principal.subject
    common["roles"] = [f"{r}@{d}" for r, d in gw.policy.roles(principal.subject)]
    try:
        # Stored before it is logged: both are durable, and a log failure still answers 503.
        uid = await anyio.to_thread.run_sync(accept, gw.lineage, body)
    except InvalidEvent as exc:
        return await gw.recorder.reject(common, started, 400, errors.BAD_USER_INPUT, str(exc))
    record = AccessRecord(
        **common,
        action="lineage_ingest",
        status=201,
        decision="allow",
        reason=f"lineage event {uid} accepted",
        latency_ms=(time.perf_counter() - started) * 1000,
        bytes=len(body),
    )
    if not await gw.recorder.commit([record]):
        return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
    return JSONResponse({"uid": uid}, status_code=201)
