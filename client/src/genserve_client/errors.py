"""What the client raises. Everything it raises on purpose is a `GenserveError`, so one `except` covers the service.

The server answers errors as `application/problem+json` (RFC 9457); `ProblemError` keeps that body whole and picks a
subclass by status, so callers can catch `NotFound` or `ValidationError` instead of comparing numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .types import TrainingState

MAX_ERRORS_IN_MESSAGE = 3  # the rest are in .errors; a message stays one readable line


class GenserveError(Exception):
    """Base of every error this client raises on purpose."""


class NetworkError(GenserveError):
    """No answer came back (connection refused or dropped, a timeout), after the retries the request allowed.

    The httpx exception is the `__cause__`."""


class ProblemError(GenserveError):
    """The service answered with an error status. Carries the problem+json body as the server sent it."""

    def __init__(self, status: int, body: Mapping[str, Any], response_headers: Mapping[str, str]) -> None:
        self.status = status
        self.body: dict[str, Any] = dict(body)
        self.response_headers: dict[str, str] = {k.lower(): v for k, v in response_headers.items()}
        self.title: str = str(body.get("title") or "")
        self.detail: str = str(body.get("detail") or "")
        raw_errors = body.get("errors")
        self.errors: list[dict[str, Any]] = (
            [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
        )
        super().__init__(self._message())

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait before trying again (`Retry-After`, in seconds or as an HTTP date);
        None without one, which for a 429 means a quota: something has to end first, so waiting will not help."""
        return retry_after_seconds(self.response_headers.get("retry-after"))

    def _message(self) -> str:
        text = f"{self.status} {self.title}".rstrip()
        if self.detail:
            text += f": {self.detail}"
        listed = [f"{loc_text(e.get('loc'))}: {e.get('msg', '')}" for e in self.errors[:MAX_ERRORS_IN_MESSAGE]]
        shown = [e for e in listed if e not in self.detail]  # the server's detail often quotes the first already
        hidden = int(self.body.get("error_count") or len(self.errors)) - len(listed)
        parts = shown + ([f"and {hidden} more"] if hidden > 0 else [])
        if parts:
            text += " [" + "; ".join(parts) + "]"
        return text


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (never negative); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a malformed one without a zone is taken as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def loc_text(loc: object) -> str:
    """["body", "labels", 3] -> "body.labels.3": the form the server's own `detail` uses."""
    if isinstance(loc, list | tuple):
        return ".".join(str(part) for part in loc)
    return str(loc)


class BadRequest(ProblemError):
    """400: the request could not be read at all (e.g. two Authorization headers)."""


class Unauthorized(ProblemError):
    """401: the service has API keys, and this request had none or an unknown one."""


class Forbidden(ProblemError):
    """403: the key lacks the route's scope, or the thing cannot be deleted (a built-in dataset)."""


class NotFound(ProblemError):
    """404: no such dataset, training, model, name or alias."""


class Conflict(ProblemError):
    """409: the resource's state forbids it now (cancel an ended training, delete a dataset in use)."""


class PayloadTooLarge(ProblemError):
    """413: over one of the server's size limits; `body["limit"]` is the bound."""


class UnsupportedMediaType(ProblemError):
    """415: a file type the server does not read, or JSON where the model wants images (or the reverse)."""


class ValidationError(ProblemError):
    """422: invalid input; `.errors[i]["loc"]` names the field."""


class RateLimited(ProblemError):
    """429: a rate limit (retried while `Retry-After` allows) or a quota (no `Retry-After`: raised at once)."""


class ServerError(ProblemError):
    """5xx: the service failed or is not able to serve now."""


class ServiceUnavailable(ServerError):
    """503: Redis down, a full sample queue, MNIST downloading, too many connections; retried with `Retry-After`."""


class GatewayTimeout(ServerError):
    """504: the samples were not served before their deadline (`timeout_ms`)."""


class InsufficientStorage(ServerError):
    """507: the key's uploaded datasets would take more than its storage quota."""


ERROR_OF_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
    503: ServiceUnavailable,
    504: GatewayTimeout,
    507: InsufficientStorage,
}


def problem_error(status: int, reason: str, content: bytes, headers: Mapping[str, str]) -> ProblemError:
    """The typed error for an error answer. A body that is not a JSON object (the HTTP server's plain-text 503 when
    it has too many connections, a proxy's HTML page) still gives a problem-shaped body, its text as `detail`."""
    body: Any
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = content.decode("utf-8", "replace").strip()
        body = {"type": "about:blank", "title": reason, "status": status, "detail": text}
    cls = ERROR_OF_STATUS.get(status) or (ServerError if status >= 500 else ProblemError)
    return cls(status, body, headers)


class TrainingEnded(GenserveError):
    """A training ended without a model. `.training` is the handle, with the record as it ended."""

    def __init__(self, training: TrainingState, message: str) -> None:
        self.training = training
        super().__init__(message)


class TrainingFailed(TrainingEnded):
    """The training failed; `.training.error` says why."""


class TrainingCanceled(TrainingEnded):
    """The training was canceled (by this client or anyone else) before it produced a model."""


class WaitTimeout(GenserveError, TimeoutError):
    """`Training.wait(timeout=...)` ran out before the training ended; the training goes on."""
