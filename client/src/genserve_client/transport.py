"""The one place requests are sent: the service's address, the API key, timeouts, and retries.

Retries: a 429 or 503 whose `Retry-After` says when to come back is sent again after that long (at most
`max_retry_wait`), up to `max_retries` times; one without `Retry-After` is raised at once (a 429 without it is a
quota: something has to end first, and no wait fixes that). A lost connection is retried with a short backoff when
sending the request again cannot do anything twice (see `Call.idempotent`). Other errors are raised as they come.

`Transport` and `AsyncTransport` differ only in how they wait and read; the decisions are `Settings`'s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from . import __version__
from .calls import Call
from .errors import NetworkError, ProblemError, problem_error

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GENSERVE_URL"
API_KEY_ENV = "GENSERVE_API_KEY"
RETRIED_STATUSES = frozenset({429, 503})
CONNECTION_BACKOFF_S = 0.5  # doubled on each further try


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str | None
    timeout: float | None
    max_retries: int
    max_retry_wait: float

    @classmethod
    def resolve(
        cls, url: str | None, api_key: str | None, timeout: float | None, max_retries: int, max_retry_wait: float
    ) -> Settings:
        """The arguments, with the environment (GENSERVE_URL, GENSERVE_API_KEY) filling what was left out."""
        if max_retries < 0 or max_retry_wait < 0:
            raise ValueError("max_retries and max_retry_wait cannot be negative")
        url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        return cls(url.rstrip("/"), api_key, timeout, max_retries, max_retry_wait)

    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        headers = {"User-Agent": f"genserve-client/{__version__}", **call.headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        timeout = httpx.Timeout(self.timeout)
        if call.read_timeout is not None:
            timeout = httpx.Timeout(self.timeout, read=call.read_timeout)
        return http.build_request(
            call.method,
            self.url_of(call.path),
            params=list(call.params) or None,
            json=call.body.json,
            files=call.body.files,
            data=call.body.data,
            headers=headers,
            timeout=timeout,
        )

    def url_of(self, path: str) -> str:
        """A path from the service's root, under the configured URL (which may have a prefix of its own)."""
        return path if path.startswith(("http://", "https://")) else f"{self.url}/{path.lstrip('/')}"

    def delay_after_answer(self, call: Call[Any], attempt: int, error: ProblemError) -> float:
        """How long to wait before sending `call` again after this error answer; raises it when not to."""
        wait = error.retry_after
        if error.status not in RETRIED_STATUSES or wait is None or attempt >= self.max_retries:
            raise error
        return min(wait, self.max_retry_wait)

    def delay_after_error(self, call: Call[Any], attempt: int, exc: httpx.TransportError) -> float:
        """How long to wait before sending `call` again after no answer came; raises NetworkError when not to."""
        if not call.idempotent or attempt >= self.max_retries:
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise NetworkError(f"{call.method} {self.url_of(call.path)}: {exc!r}{tries}") from exc
        return min(CONNECTION_BACKOFF_S * 2.0**attempt, self.max_retry_wait)


def error_of(response: httpx.Response) -> ProblemError:
    return problem_error(response.status_code, response.reason_phrase, response.content, response.headers)


class Transport:
    """Blocking I/O over httpx.Client."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.Client()
        self._owns_http = http is None

    def call(self, call: Call[T]) -> T:
        response = self._send(call, stream=False)
        try:
            return call.parse(response)
        finally:
            response.close()

    @contextmanager
    def stream(self, call: Call[Any]) -> Iterator[httpx.Response]:
        """The answer with its body still to be read (an event stream); closed when the block ends."""
        response = self._send(call, stream=True)
        try:
            yield response
        finally:
            response.close()

    def _send(self, call: Call[Any], stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.send(self.settings.build(self._http, call), stream=True)
                if response.status_code >= 400 or not stream:
                    response.read()  # inside the try: a body cut off is no answer either
            except httpx.TransportError as exc:
                if response is not None:
                    response.close()
                delay = self.settings.delay_after_error(call, attempt, exc)
            else:
                if response.status_code < 400:
                    return response
                response.close()
                delay = self.settings.delay_after_answer(call, attempt, error_of(response))
            attempt += 1
            time.sleep(delay)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


class AsyncTransport:
    """asyncio I/O over httpx.AsyncClient."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None

    async def call(self, call: Call[T]) -> T:
        response = await self._send(call, stream=False)
        try:
            return call.parse(response)
        finally:
            await response.aclose()

    @asynccontextmanager
    async def stream(self, call: Call[Any]) -> AsyncIterator[httpx.Response]:
        response = await self._send(call, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send(self, call: Call[Any], stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.send(self.settings.build(self._http, call), stream=True)
                if response.status_code >= 400 or not stream:
                    await response.aread()
            except httpx.TransportError as exc:
                if response is not None:
                    await response.aclose()
                delay = self.settings.delay_after_error(call, attempt, exc)
            else:
                if response.status_code < 400:
                    return response
                await response.aclose()
                delay = self.settings.delay_after_answer(call, attempt, error_of(response))
            attempt += 1
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
