"""A request body, bounded and checked before anything parses it.

Size (HTTP 413), arrival time (HTTP 408), encoding and JSON nesting (HTTP 400) are checked on the
raw bytes, so no parser ever sees a body that could exhaust it: Python's `json` recurses once per
nesting level and raised `RecursionError` (HTTP 500) on 40 KB of `[` before this check existed.
The body is read from the ASGI `receive` channel and handed on unchanged (`replay`), the way a
Starlette middleware passes a consumed body to the app behind it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from gateway import errors
from gateway.errors import GovernedError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]  # starlette.types.Receive

MAX_JSON_DEPTH = 64  # a GraphQL body with the deepest `where` (8 levels) nests ~25 levels
BODY_TIMEOUT_S = 10.0

# A JSON string, or an unterminated one up to the end: linear, never backtracks (an unmatched quote
# swallows the rest, which is then no valid JSON anyway).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENING = frozenset(b"[{")
# A \u escape of a UTF-16 surrogate (D800-DFFF): paired ones decode to one character, a lone one
# stays a lone surrogate, which no UTF-8 encoder (DuckDB, the store, the response) accepts.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse(status: int, code: str, message: str) -> GovernedError:
    return GovernedError(message, code, status=status)


async def read_body(
    receive: Receive, declared: str | None, limit: int, timeout: float = BODY_TIMEOUT_S
) -> bytes:
    """The whole body from `receive`, at most `limit` bytes, within `timeout` seconds.

    `declared` is the Content-Length header (checked first: an oversized body is refused before a
    byte of it is read). Raises GovernedError: 413 `LIMIT_EXCEEDED` when too large, 408
    `LIMIT_EXCEEDED` when it does not arrive in time (a client trickling its body holds a
    connection), 400 `BAD_USER_INPUT` when the client disconnects.
    """
    if declared and declared.isdigit() and int(declared) > limit:
        raise _refuse(413, errors.LIMIT_EXCEEDED, f"Request body larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout) as scope:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _refuse(400, errors.BAD_USER_INPUT, "The client disconnected before sending the body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _refuse(413, errors.LIMIT_EXCEEDED, f"Request body larger than {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    if scope.cancelled_caught:
        raise _refuse(408, errors.LIMIT_EXCEEDED, f"The request body did not arrive within {timeout:g} s.")
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields `body` once, then defers to the client's channel (disconnects)."""
    sent = False

    async def again() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


def too_deep(body: bytes, max_depth: int) -> bool:
    """True if the JSON text nests arrays/objects deeper than `max_depth` (strings do not count).

    One pass over the brackets outside strings; stops at the first level too deep. A body with
    no more brackets in all (strings included) than `max_depth` cannot nest deeper: no pass."""
    if body.count(b"{") + body.count(b"[") <= max_depth:
        return False
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if byte in _OPENING:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of a UTF-8 body (RFC 8259 §8.1), after the encoding and nesting checks.

    Raises GovernedError, HTTP 400: `BAD_USER_INPUT` when not UTF-8 or not JSON, `LIMIT_EXCEEDED`
    when nested more than `max_depth` levels (the message says which)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(
            400, errors.BAD_USER_INPUT, f"The body is not valid UTF-8 (byte {exc.start})."
        ) from None
    if too_deep(body, max_depth):
        raise _refuse(
            400, errors.LIMIT_EXCEEDED, f"The JSON body is nested more than {max_depth} levels deep."
        )
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _refuse(400, errors.BAD_USER_INPUT, f"The body is not valid JSON: {exc}.") from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise _refuse(
            400,
            errors.BAD_USER_INPUT,
            "The body is not valid JSON text: a \\u escape names a lone UTF-16 surrogate (RFC 8259 §8.2).",
        )
    return value


def parse_json_object(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """`parse_json` for a body that must be one JSON object (a GraphQL request: "GraphQL over HTTP",
    request body = a JSON-encoded map; one OpenLineage RunEvent): an empty body, an array, a string,
    a number, `true`/`false` or `null` is HTTP 400 `BAD_USER_INPUT` (Strawberry raised on the last
    few: HTTP 500)."""
    if not body.strip():
        raise _refuse(400, errors.BAD_USER_INPUT, "The body is empty; send one JSON object.")
    value = parse_json(body, max_depth)
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), "a value")
        raise _refuse(400, errors.BAD_USER_INPUT, f"The body must be one JSON object, not {kind}.")
    return value


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_KINDS[type(None)] = "null"


def _lone_surrogate(value: Any) -> bool:
    """True if any string (key or value) in the decoded JSON holds a lone surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
