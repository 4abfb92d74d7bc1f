"""Governed errors: their message is safe to show and they carry `extensions.code`.

Anything else raised in a resolver is an internal error and is masked before it leaves.
"""

from __future__ import annotations

from typing import Any

from gateway.limits import LIMIT_MESSAGES
from graphql import GraphQLError

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
BAD_USER_INPUT = "BAD_USER_INPUT"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL_SERVER_ERROR"

# One message for "denied discovery" and "does not exist", so a denial reveals nothing.
NOT_AVAILABLE = "No such product is available to you."
# What MaskErrors puts in place of an internal error's message (details go to the server log).
MASKED_MESSAGE = "Internal error."


# The HTTP status of a request refused as a whole with this code (a GraphQL field error is 200).
HTTP_STATUS = {UNAUTHENTICATED: 401, FORBIDDEN: 403, BAD_USER_INPUT: 400, LIMIT_EXCEEDED: 400}
HTTP_STATUS.update({UNAVAILABLE: 503, INTERNAL: 500})


class GovernedError(Exception):
    """A refusal whose message is safe to show. `status` is the HTTP status when it refuses a whole
    request (default: by code, `HTTP_STATUS`)."""

    def __init__(self, message: str, code: str, *, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or HTTP_STATUS.get(code, 400)
        # graphql-core copies `extensions` of the original error into the located GraphQLError.
        self.extensions: dict[str, Any] = {"code": code, **extra}


def internal(request_id: str) -> GovernedError:
    """An unexpected failure: its details go to the server log under `request_id`, never out."""
    return GovernedError(f"Internal error; it was logged as request {request_id}.", INTERNAL)


def forbidden(message: str) -> GovernedError:
    return GovernedError(message, FORBIDDEN)


def bad_input(message: str) -> GovernedError:
    return GovernedError(message, BAD_USER_INPUT)


def limit_exceeded(message: str) -> GovernedError:
    return GovernedError(message, LIMIT_EXCEEDED)


def _bad_variable(error: GraphQLError) -> bool:
    """A variable value that does not coerce to its declared type (e.g. an unknown enum value):
    graphql-core keeps the scalar's exception as `original_error`, but it is the caller's input."""
    return error.path is None and error.message.startswith("Variable '$")


def should_mask(error: GraphQLError) -> bool:
    """Mask internal failures only; governed errors and query validation errors keep their text."""
    original = error.original_error
    return original is not None and not isinstance(original, GovernedError) and not _bad_variable(error)


_LIMIT_MARKERS = (
    *LIMIT_MESSAGES,
    "exceeds maximum operation depth",
    "aliases found. allowed",
    "tokens. parsing aborted",
)


def error_code(error: GraphQLError) -> str:
    """The code for an error that has none yet (validation, limits, masked internals)."""
    if error.extensions and error.extensions.get("code"):
        return str(error.extensions["code"])
    original = error.original_error
    if isinstance(original, GovernedError):
        return original.code
    if error.message == MASKED_MESSAGE:
        return INTERNAL
    message = error.message.lower()
    if any(marker in message for marker in _LIMIT_MARKERS):
        return LIMIT_EXCEEDED
    if original is None or _bad_variable(error):
        return BAD_USER_INPUT  # parse, validation and variable-coercion errors
    return INTERNAL
