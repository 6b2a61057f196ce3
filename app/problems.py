"""The one place that turns errors into `application/problem+json` (RFC 9457) responses.

Domain code raises the `models.errors` tree; only this module knows which HTTP status each one gets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError as RedisReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GenserveError,
    Invalid,
    NotFound,
    QuotaExceeded,
    RateLimited,
    StorageExceeded,
    TimedOut,
    TooLarge,
    TrainingDiverged,
    Unauthorized,
    Unavailable,
    UnsupportedFormat,
)

log = logging.getLogger("genserve.api")

PROBLEM_JSON = "application/problem+json"
REDIS_RETRY_AFTER_S = 5
MAX_REPORTED_ERRORS = 20  # a problem body lists at most this many errors, plus their total count
MAX_DETAIL_CHARS = 1000
MAX_TEXT_CHARS = 200  # of one error's message, and of each part of its location

STATUS_OF: list[tuple[type[GenserveError], int]] = [
    (BadRequest, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (QuotaExceeded, 429),
    (StorageExceeded, 507),
    (TooLarge, 413),
    (UnsupportedFormat, 415),
    (Invalid, 422),
    (Unavailable, 503),
    (TimedOut, 504),
    (TrainingDiverged, 422),
]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; nobody is left to read one."""


CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client closed the connection first" (only seen in logs)


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: Sequence[dict[str, Any]] | None = None,
    error_count: int | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response. Its size is bounded whatever the input: the first MAX_REPORTED_ERRORS errors (with
    `error_count` when there were more), messages and locations clipped, `detail` at most MAX_DETAIL_CHARS."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": clip(detail, MAX_DETAIL_CHARS),
    }
    if errors:
        body["errors"] = [
            {
                **e,
                "loc": [p if isinstance(p, int) else clip(str(p)) for p in e.get("loc", [])],
                "msg": clip(str(e.get("msg", ""))),
            }
            for e in errors[:MAX_REPORTED_ERRORS]
        ]
        total = max(len(errors), error_count or 0)
        if total > MAX_REPORTED_ERRORS:
            body["error_count"] = total
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def unexpected(exc: BaseException) -> JSONResponse:
    """The 500 of an error nobody expected, logged once with its traceback; the body says nothing of internals."""
    log.error("unhandled error", exc_info=exc)
    return problem(500, "Internal server error", "an unexpected error occurred; it has been logged")


@contextmanager
def located_in(*prefix: str) -> Iterator[None]:
    """Prefix the field of errors raised inside (e.g. ("file", "a.png") from a parser becomes
    ("body", "file", "a.png")), so locations read the same as the request validation's."""
    try:
        yield
    except GenserveError as exc:
        if exc.field is not None:
            exc.field = (*prefix, *exc.field)
        raise


def status_of(exc: GenserveError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def from_domain_error(exc: GenserveError) -> JSONResponse:
    status = status_of(exc)
    errors = [{"loc": list(exc.field), "msg": exc.detail}] if exc.field else None
    extra = {"limit": exc.limit} if exc.limit is not None else None
    headers = None
    if isinstance(exc, Unavailable | RateLimited) or (isinstance(exc, QuotaExceeded) and exc.retry_after_s):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(status, exc.title, exc.detail, errors=errors, headers=headers, extra=extra)


def _validation_msg(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    ctx = err.get("ctx") or {}
    if err.get("type") == "json_invalid":
        return f"malformed JSON: {ctx.get('error', msg)}"
    return msg


def validation_problem(raw: Sequence[Any]) -> JSONResponse:
    """422 for request validation errors: every field named (up to MAX_REPORTED_ERRORS), the limit crossed when a
    list was too long."""
    shown = [{"loc": list(e.get("loc", ())), "msg": _validation_msg(e)} for e in raw[:MAX_REPORTED_ERRORS]]
    names = ", ".join(".".join(clip(str(p), 40) for p in e["loc"]) for e in shown) or "request"
    more = f" and {len(raw) - len(shown)} more" if len(raw) > len(shown) else ""
    limits = [(e.get("ctx") or {}).get("max_length") for e in raw[:MAX_REPORTED_ERRORS] if e.get("type") == "too_long"]
    extra = {"limit": limits[0]} if limits and limits[0] is not None else None
    detail = f"invalid value for {names}{more}: {shown[0]['msg'] if shown else 'invalid request'}"
    return problem(422, "Invalid input", detail, errors=shown, error_count=len(raw), extra=extra)


def install(app: FastAPI) -> None:
    """Register the handlers that make every error body the same shape."""

    @app.exception_handler(GenserveError)
    async def _domain(_: Request, exc: GenserveError) -> JSONResponse:
        return from_domain_error(exc)

    @app.exception_handler(ClientDisconnected)
    async def _gone(_: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 413: "Request body too large"}.get(
            exc.status_code, "Error"
        )
        limit = getattr(exc, "limit", None)
        errors = None
        if limit is not None:
            errors = [{"loc": ["body"], "msg": f"larger than {limit} bytes"}]
        elif exc.status_code == 400:  # FastAPI could not parse the body at all (e.g. JSON nested too deep)
            errors = [{"loc": ["body"], "msg": str(exc.detail)}]
        return problem(
            exc.status_code,
            title,
            str(exc.detail),
            headers=getattr(exc, "headers", None),
            errors=errors,
            extra={"limit": limit} if limit is not None else None,
        )

    @app.exception_handler(RedisConnectionError)  # with Sentinel: MasterNotFoundError, a demoted master
    @app.exception_handler(RedisTimeoutError)
    @app.exception_handler(RedisReadOnlyError)  # a URL that names a master which a failover demoted
    async def _redis(_: Request, exc: Exception) -> JSONResponse:
        log.warning("redis unavailable: %s", exc)
        return problem(
            503,
            "Service unavailable",
            "the job queue (Redis) is not reachable; sampling from stored models still works",
            headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)
