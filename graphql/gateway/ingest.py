"""`POST /api/v1/lineage`: OpenLineage events from other producers in the city.

Lineage ingest is a privilege: the caller must hold `produce_lineage` on the event's job namespace
(`PolicyEngine.decide_system`, granted by policy lines to producer identities). Authentication, the
body's size and nesting limits and the request id are the pipeline's (`pipeline.py`); what an
external event may state is `lineage.receiver`'s. The accepted event (marked external, with its
submitter) and the request's access-log record are committed in one transaction: no event is
stored without its record. Answers: 201 `{"uid"}`, 400 `BAD_USER_INPUT` (not a usable RunEvent),
403 `FORBIDDEN` (no right, or it writes where only civicmesh writes), 503 when it cannot be recorded.
"""

from __future__ import annotations

import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway import errors
from gateway.context import RequestContext
from gateway.errors import GovernedError
from gateway.pipeline import request_context
from gateway.recording import LOG_DOWN, error_response
from lineage.receiver import ForbiddenEvent, InvalidEvent, accept, check_event
from meshcore.accesslog import AccessRecord
from policies.decision import Decision

ACTION = "lineage_ingest"
RIGHT = "produce_lineage"


def _record(
    ctx: RequestContext, decision: Decision | None, status: int, reason: str, code: str | None
) -> Any:
    return AccessRecord(
        **ctx.log_fields,
        action=ACTION,
        status=status,
        # a refused event is a denial whichever check refused it (the right, or what it states)
        decision="deny" if status == 403 else ("allow" if status == 201 else "none"),
        rule=decision.rule if decision else None,
        policy_version=decision.policy_version if decision else None,
        reason=reason,
        error_code=code,
        latency_ms=(time.perf_counter() - ctx.started) * 1000,
        bytes=len(ctx.body),
    )


async def _refuse(ctx: RequestContext, decision: Decision | None, error: GovernedError) -> Response:
    record = _record(ctx, decision, error.status, str(error), error.code)
    assert ctx.recorder is not None  # the pipeline builds every context with the recorder
    if not await ctx.recorder.commit([record], None, ctx):
        return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
    return error_response(error.status, error.code, str(error))


async def handle_lineage_post(request: Request) -> Response:
    """Decide, check, then store the event and its record together."""
    ctx = request_context(request)
    assert ctx.recorder is not None  # the pipeline builds every context with the recorder
    try:
        event = check_event(ctx.payload)
    except InvalidEvent as exc:
        return await _refuse(ctx, None, errors.bad_input(f"Not an acceptable RunEvent: {exc}."))
    namespace, job = event["job"]["namespace"], event["job"]["name"]
    decision = ctx.policy.decide_system(ctx.subject, RIGHT, namespace)
    if not decision.allowed:
        return await _refuse(ctx, decision, errors.forbidden(f"You may not {RIGHT} in {namespace!r}."))
    try:
        marked = await anyio.to_thread.run_sync(accept, event, ctx.subject, ctx.lineage_graph.owned)
    except ForbiddenEvent as exc:
        return await _refuse(ctx, decision, errors.forbidden(f"Refused: {exc}."))
    except InvalidEvent as exc:
        return await _refuse(ctx, decision, errors.bad_input(f"Not an acceptable RunEvent: {exc}."))
    rows = await anyio.to_thread.run_sync(ctx.recorder.lineage.outbox.prepare, [marked])
    uid = rows[0]["event_uid"]
    record = _record(ctx, decision, 201, f"lineage event {uid} accepted: job {namespace}/{job}", None)
    if not await ctx.recorder.commit([record], None, ctx, outbox_rows=rows):
        return error_response(503, errors.UNAVAILABLE, LOG_DOWN)
    return JSONResponse({"uid": uid}, status_code=201)
