"""Strawberry's ASGI view, adjusted: every error gets `extensions.code`, and each response with
data carries `extensions.governance` (per product: snapshot, masked columns, row filter).
`response_body` is that shape, shared with in-process execution (`inprocess.py`)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gateway import ide
from gateway.context import RequestContext
from gateway.errors import INTERNAL, error_code

CONTEXT_KEY = "civicmesh_context"
_PLAIN_KEYS = frozenset({"query", "variables", "operationName", "extensions"})
_OBJECT_OR_NULL = (dict, type(None))
_TEXTS = (str, type(None))
_POST_OPERATIONS = OperationType.from_http("POST")


class GatewayView(GraphQL):
    def __init__(self, schema: Any, demo_mode: bool) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if demo_mode else None,
            allow_queries_via_get=False,  # GET is CSRF-able and cached by proxies
            multipart_uploads_enabled=False,
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        return ide.page(request)  # GraphiQL from local files (gateway/ide.py), never a CDN

    def encode_json(self, data: object) -> str | bytes:
        # orjson is ~5x faster than json.dumps on a page of rows; the result is plain JSON types
        # (graphql-core has serialised every scalar already). Anything orjson refuses falls back.
        try:
            return orjson.dumps(data)
        except TypeError:
            return json.dumps(data, separators=(",", ":"))

    async def get_context(self, request: Any, response: Any) -> Any:
        return getattr(request.state, CONTEXT_KEY, None)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        return response_body(result, getattr(request.state, CONTEXT_KEY, None))

    async def answer_plain(self, request: Request, ctx: RequestContext) -> Response | None:
        """The answer `run` gives a plain JSON POST (what nearly every client sends: content type
        exactly `application/json`, one operation as `query`, `variables` and `operationName`),
        without Strawberry's HTTP layer: the body as the pipeline parsed it (`ctx.payload`), the
        same execution and the same response. None for any other request, and for one Strawberry
        refuses before executing it (no operation, an operation name not in the document, an
        operation type POST does not allow): `run` answers those, with nothing done twice but a
        cached parse (~0.3 ms of event-loop CPU per request saved, issue 16)."""
        payload = ctx.payload
        if request.method != "POST" or request.headers.get("content-type") != "application/json":
            return None
        if (
            type(payload) is not dict
            or not payload.keys() <= _PLAIN_KEYS
            or payload.get("extensions") is not None
        ):
            return None
        query, variables, name = payload.get("query"), payload.get("variables"), payload.get("operationName")
        if type(query) is not str or type(variables) not in _OBJECT_OR_NULL or type(name) not in _TEXTS:
            return None
        if self._get_stream_transport_from_headers(request.headers) is not None:
            return None
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=ctx,
                operation_name=name,
                allowed_operation_types=_POST_OPERATIONS,
            )
        except (CannotGetOperationTypeError, InvalidOperationTypeError, MissingQueryError):
            return None
        return Response(self.encode_json(response_body(result, ctx)), media_type="application/json")


def response_body(result: ExecutionResult, ctx: RequestContext | None) -> GraphQLHTTPResponse:
    """The response of a GraphQL request, over HTTP or in-process (`inprocess.py`): `data`, every
    error with `extensions.code` (and `requestId` for internal ones), and `extensions.governance`
    when there is data. Notes the error codes in `ctx` (for the access-log record)."""
    errors = []
    codes: list[str] = []
    for error in result.errors or ():
        code = error_code(error)
        codes.append(code)
        formatted = error.formatted
        formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
        if code == INTERNAL and ctx is not None:  # the key to the server log's traceback
            formatted["extensions"]["requestId"] = ctx.request_id
        errors.append(formatted)
    response: GraphQLHTTPResponse = {"data": result.data}
    if errors:
        response["errors"] = errors  # type: ignore[typeddict-item]  # graphql-core's formatted errors
    extensions = dict(result.extensions or {})
    if ctx is not None:
        ctx.error_codes = codes
        if result.data is not None:
            extensions["governance"] = ctx.governance
    if extensions:
        response["extensions"] = extensions
    return response
