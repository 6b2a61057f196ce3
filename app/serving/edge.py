"""What every HTTP request goes through first, in one lean ASGI middleware: the request body limit (chosen by
route, enforced while the body streams in, so a lying or missing Content-Length cannot dodge it), the request
metrics, and the one 500 for errors nobody handled.

One middleware instead of two, and metrics kept in plain dicts rather than prometheus-client's locked children:
on the sampling path, per-request overhead is what stands between the service and the hardware limit.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import problem, unexpected
from models.errors import TooLarge
from models.uploads.limits import UploadLimits

MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and the other fields around an uploaded file
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


F = TypeVar("F", bound=Callable[..., Any])


def accepts_uploads(endpoint: F) -> F:
    """Mark a route's endpoint as one that takes file uploads: its requests get the upload body limit."""
    endpoint.accepts_uploads = True  # type: ignore[attr-defined]
    return endpoint


async def read_upload(upload: UploadFile, limits: UploadLimits, what: str = "the file") -> bytes:
    """An uploaded file's bytes, read no further than the upload limit allows (413 naming the setting beyond it)."""
    content = await upload.read(limits.max_bytes + 1)
    if len(content) > limits.max_bytes:
        raise TooLarge(
            f"{what} exceeds {limits.max_bytes} bytes ({limits.name_of('max_bytes')})",
            field=("body", "file"),
            limit=limits.max_bytes,
        )
    return content


def upload_paths(routes: Iterable[Any]) -> re.Pattern[str] | None:
    """One pattern matching the paths of the routes whose endpoints accept uploads (None when there are none)."""
    patterns = [r.path_regex.pattern for r in routes if getattr(getattr(r, "endpoint", None), "accepts_uploads", False)]
    unnamed = [re.sub(r"\(\?P<\w+>", "(?:", p) for p in patterns]  # one pattern may not repeat a group name
    return re.compile("|".join(f"(?:{p})" for p in unnamed)) if unnamed else None


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes ({setting})")
        self.limit = limit


class RequestStats(Collector):
    """Request counts and latency histograms by method, route template and status, exported at scrape time.

    Written only by the event loop's thread; read by the scrape through atomic copies.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[tuple[str, str, str], int] = {}
        self.histograms: dict[tuple[str, str], list[float]] = {}  # per-bucket counts, then +Inf, then the sum

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.histograms.get((method, route))
        if hist is None:
            hist = self.histograms[(method, route)] = [0.0] * (len(self.buckets) + 2)
        hist[bisect.bisect_left(self.buckets, seconds)] += 1
        hist[-1] += seconds

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        counter = CounterMetricFamily("genserve_http_requests", "HTTP requests", labels=["method", "route", "status"])
        for (method, route, status), n in list(self.counts.items()):
            counter.add_metric([method, route, status], n)
        yield counter
        latency = HistogramMetricFamily(
            "genserve_http_request_duration_seconds", "HTTP request latency", labels=["method", "route"]
        )
        for (method, route), hist in list(self.histograms.items()):
            cumulative, total = [], 0.0
            for bound, in_bucket in zip((*self.buckets, float("inf")), hist[:-1], strict=True):
                total += in_bucket
                cumulative.append((str(bound) if bound != float("inf") else "+Inf", total))
            latency.add_metric([method, route], cumulative, sum_value=hist[-1])
        yield latency


class EdgeMiddleware:
    """The body limit (chosen by route: uploads on the upload routes, JSON bodies everywhere else, whatever the
    client's Content-Type claims), the request metrics, and one 500 for any error nobody handled (logged once; the
    connection stays usable, as after any other answer). Slow bodies are the HTTP server's to time out
    (`app.connections`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        stats: RequestStats,
        json_limit: int,
        upload_limit: int,
        upload_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.stats = stats
        self.json_limit = json_limit
        self.upload_limit = upload_limit + MULTIPART_OVERHEAD
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        try:
            if scope["method"] in BODY_METHODS:
                await self._limited(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        except Exception as exc:
            if state["started"]:
                raise  # too late to answer: the server ends the connection
            await unexpected(exc)(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            self.stats.observe(
                scope["method"], getattr(route, "path", "unmatched"), state["status"], time.perf_counter() - start
            )

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        upload = self.upload_paths is not None and self.upload_paths.match(scope["path"]) is not None
        limit = self.upload_limit if upload else self.json_limit
        setting = "GENSERVE_MAX_UPLOAD_BYTES" if upload else "GENSERVE_MAX_REQUEST_BYTES"
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await _reject(scope, receive, send, limit, setting)
                return
            # The HTTP server frames the body by Content-Length (more bytes would be the next request), so a
            # declared length within the limit needs no counting; chunked bodies (no length) are counted below.
            await self.app(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:  # raised outside FastAPI's handlers (e.g. while a response was not started yet)
            await _reject(scope, receive, send, limit, setting)


async def _reject(scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
    response = problem(
        413,
        "Request body too large",
        f"the request body exceeds {limit} bytes ({setting})",
        errors=[{"loc": ["body"], "msg": f"larger than {limit} bytes"}],
        extra={"limit": limit},
    )
    await response(scope, receive, send)
