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
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from gateway import ide
from gateway.context import RequestContext
from gateway.errors import INTERNAL, error_code

CONTEXT_KEY = "civicmesh_context"


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
