"""The HTTP server's deadlines for clients that send slowly, or not at all: a request's headers must arrive within
GENSERVE_HEADER_TIMEOUT_S, its body within GENSERVE_BODY_TIMEOUT_S after them.

uvicorn times out idle keep-alive connections, but neither headers nor bodies: a client could open connections,
send a byte now and then, and hold them (and the memory of what it sent) forever. `DeadlineProtocol` is uvicorn's
httptools protocol with both deadlines. A connection that misses the headers' is closed; one that misses the body's
is answered 408 (problem+json) and closed, which also ends the app's wait for the rest of the body. `genserve serve`
also caps concurrent connections (`limit_concurrency`).

The deadlines are kept by one sweep a second over the server's connections rather than by a timer per request,
which would cost every request of the hot path a timer's creation and cancellation (measured: BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.problems import PROBLEM_JSON
from app.settings import get_settings

SWEEP_EVERY_S = 1.0


class DeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol with deadlines for a request's headers (from the connection, or from the first byte of
    the next request on a kept-alive one) and for its body (from the end of its headers). A class uvicorn can
    import by name, so that `--workers N` processes use it too; each reads the settings."""

    _sweeping: set[asyncio.AbstractEventLoop] = set()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.headers_since: float | None = None  # waiting for a request's headers since then
        self.body_since: float | None = None  # waiting for a request's body since then

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers_since = self.loop.time()
        if self.loop not in DeadlineProtocol._sweeping:
            DeadlineProtocol._sweeping.add(self.loop)
            self.loop.call_later(SWEEP_EVERY_S, _sweep, self.loop, self.connections)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.headers_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self.headers_since = None
        self.body_since = self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.body_since = None
        super().on_message_complete()

    def missed_deadline(self, now: float) -> None:
        """Close the connection if it missed a deadline (with a 408 when the body is late and nothing was sent)."""
        if self.transport.is_closing():
            return
        if self.headers_since is not None and now - self.headers_since > self.header_timeout_s:
            self.transport.close()
        elif self.body_since is not None and now - self.body_since > self.body_timeout_s:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self.transport.write(_request_timeout(self.body_timeout_s))
            self.transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
    """Close the connections that missed a deadline; then come back in a second."""
    now = loop.time()
    for conn in list(connections):
        if isinstance(conn, DeadlineProtocol):
            conn.missed_deadline(now)
    loop.call_later(SWEEP_EVERY_S, _sweep, loop, connections)


def _request_timeout(timeout_s: float) -> bytes:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Request timeout",
            "status": 408,
            "detail": f"the request body did not arrive within {timeout_s:g} s (GENSERVE_BODY_TIMEOUT_S)",
            "errors": [{"loc": ["body"], "msg": f"not complete within {timeout_s:g} s"}],
        }
    ).encode()
    head = (
        f"HTTP/1.1 408 Request Timeout\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode()
    return head + body
