"""How the gateway is served: uvicorn's options (`uvicorn_options`, used by `civicmesh serve` and
the tests alike), and the one timeout uvicorn lacks.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive` seconds, but only once a
response has been sent: a connection that never completes its request head (nothing sent, or a
slow-loris client sending headers a byte at a time, each byte resetting nothing) was held forever
(issue 11: 200 such connections stayed open). `HeaderTimeoutH11Protocol` arms a timer when a
connection opens and when the first bytes of each later request head arrive (between requests
uvicorn's keep-alive timeout applies), and answers 408 and closes the connection if the head is
not complete in time. h11 (not httptools) because it also bounds the size of an
incomplete head (`h11_max_incomplete_event_size`). The body has its own deadline in the request
pipeline (HTTP 408 with an access-log record, `http_body.BODY_TIMEOUT_S`); a connection dropped
here never became a request, so it is logged by the server, not in the access log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0  # a request head (request line + headers) must arrive within this
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this (uvicorn's default, stated)
MAX_HEAD_BYTES = 16 * 1024  # h11's bound on an incomplete request head
MAX_CONCURRENCY = 1000  # connections or tasks at once; beyond, uvicorn answers 503
BACKLOG = 2048

_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (see the module docstring)."""

    header_timeout: float = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()  # nothing sent yet counts too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # cancels the keep-alive timer: a new head has begun
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # the request head is complete
        elif self._head_timer is None and not self.transport.is_closing():
            self._arm()  # the first bytes of a head: it must be complete in time

    def on_response_complete(self) -> None:
        self._disarm()  # until the next head begins, the keep-alive timeout watches the connection
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.info(
            "closed a connection from %s: no complete request head within %gs",
            self.client,
            self.header_timeout,
        )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def uvicorn_options(protocol: type[H11Protocol] = HeaderTimeoutH11Protocol) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config`: the protocol above, keep-alive and
    head-size limits, a bound on concurrent connections, and no WebSocket protocol: no route
    of the gateway or the portal is a WebSocket, and uvicorn would import one at every start."""
    return {
        "http": protocol,
        "ws": "none",
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "limit_concurrency": MAX_CONCURRENCY,
        "backlog": BACKLOG,
    }
