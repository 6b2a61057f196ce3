"""The HTTP server's guard against clients that connect and then send their headers slowly, or never.

uvicorn times out idle keep-alive connections but not a request's headers: a client could open connections, send a
byte now and then, and hold them (and their memory) forever. `HeaderTimeoutProtocol` gives uvicorn's httptools
protocol a deadline for each request's headers; a connection that misses it is closed. (Slow bodies are the ASGI
app's to time out: `app.serving.edge`.) `genserve serve` also caps concurrent connections (`limit_concurrency`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """httptools' protocol, closing a connection whose request headers are not complete within
    GENSERVE_HEADER_TIMEOUT_S of the connection (or of the first byte of the next request on a kept-alive one).
    A class uvicorn can import by name, so that `--workers N` processes use it too; each reads the setting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
