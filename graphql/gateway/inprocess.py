"""In-process execution of a governed GraphQL document: how the staff portal reads (`Gateway.execute`).

`execute(services, principal, document, variables, request_id=, client=)` is a `POST /graphql`
without HTTP, on the same path: the caller must be in the staff directory (`pipeline.admit`), the
`RequestContext` is built by the same `Gateway.context`, the document runs on the caller's schema
(`schema.GatewaySchema.execute`: per-caller visibility, limits, decisions, masks, row scope), and
the access-log records and lineage read events are committed by the same `Recorder.finish` before
the result is returned: one record per product touched, or one for the request.

Returns the body `/graphql` would send (`view.response_body`): `{"data", "errors"?, "extensions"?}`;
field errors stay in it, with their `extensions.code`. Raises `GovernedError` when the request is
refused as a whole, recorded once like the pipeline's refusals: 400 `BAD_USER_INPUT` (no document,
or no operation of the name given), 401 `UNAUTHENTICATED` (not in the directory), 500
`INTERNAL_SERVER_ERROR`, and 503 `UNAVAILABLE` whenever the access log cannot be
written (fail closed: no record, no data). Pass fixed documents with every value in `variables`:
parsing and validation are cached by document text (ARCHITECTURE §2b).

A `Gateway` serves one event loop (the one its lifespan runs on): call `execute` from that loop.
Its caches of caller schemas, file checks and query results are per loop by design.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionResult

from gateway import errors
from gateway.auth import Principal
from gateway.context import RequestContext
from gateway.errors import GovernedError
from gateway.pipeline import Services, admit
from gateway.recording import LOG_DOWN, operation_hash
from gateway.view import response_body

log = logging.getLogger(__name__)


async def execute(
    services: Services,
    principal: Principal,
    document: str,
    variables: dict[str, Any] | None = None,
    *,
    request_id: str,
    client: str | None,
    operation_name: str | None = None,
) -> dict[str, Any]:
    """Run `document` as `principal` and record it; see the module docstring for the guarantees."""
    started = time.perf_counter()
    fields: dict[str, Any] = {"request_id": request_id, "client": client}
    ctx: RequestContext | None = None
    try:
        admit(services, principal, fields)
        await services.refresh()
        ctx = services.context(principal, fields, started)
        fields["operation_hash"] = operation_hash(document)
        result = await _execute(ctx, document, variables, operation_name)
        body: dict[str, Any] = dict(response_body(result, ctx))
    except GovernedError as exc:
        raise await _refused(services, fields, started, exc, ctx) from None
    except Exception:
        log.exception("in-process request %s failed", request_id)
        raise await _refused(services, fields, started, errors.internal(request_id), ctx) from None
    request_error = ctx.error_codes[0] if ctx.error_codes else None
    response = Response(orjson.dumps(body), media_type="application/json")
    recorded = await services.recorder.finish(ctx, response, ctx.touches, request_error)
    if recorded.status_code != response.status_code:  # the log could not be written
        raise GovernedError(LOG_DOWN, errors.UNAVAILABLE)
    return body


async def _execute(
    ctx: RequestContext, document: str, variables: dict[str, Any] | None, operation_name: str | None
) -> ExecutionResult:
    """The schema's result; what Strawberry refuses before executing (no document, no operation of
    that name) raises GovernedError 400 `BAD_USER_INPUT` with the message its HTTP view sends
    (`strawberry.http.async_base_view`), as `POST /graphql` answers it."""
    try:
        return await ctx.schema.execute(document, variables, context_value=ctx, operation_name=operation_name)
    except CannotGetOperationTypeError as exc:
        raise GovernedError(exc.as_http_error_reason(), errors.BAD_USER_INPUT) from None
    except MissingQueryError:
        raise GovernedError("No GraphQL query found in the request", errors.BAD_USER_INPUT) from None


async def _refused(
    services: Services,
    fields: dict[str, Any],
    started: float,
    error: GovernedError,
    ctx: RequestContext | None,
) -> GovernedError:
    """Record a refusal (unless the request's record was written already) and return what to raise:
    the refusal itself, or 503 `UNAVAILABLE` if even that record could not be written."""
    if ctx is not None and ctx.recorded:
        return error
    response = await services.recorder.reject(fields, started, error, "query", ctx)
    if response.status_code == 503 and error.status != 503:
        return GovernedError(LOG_DOWN, errors.UNAVAILABLE)
    return error
