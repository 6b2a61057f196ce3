"""The one error tree of genserve.

Domain code raises these; only the HTTP layer maps them to status codes (one handler, problem+json).
`field` names the offending input as a location path in plain names (e.g. ("n",) or ("file", "cats/01.png")); the
HTTP layer prefixes where in the request it was ("body", "query"),
`limit` the bound that was crossed, when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GenserveError(Exception):
    """Base of every error the service reports to a client."""

    title = "Error"

    def __init__(
        self,
        detail: str,
        *,
        field: Sequence[str | int] | None = None,
        limit: Any = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = tuple(field) if field is not None else None
        self.limit = limit


class BadRequest(GenserveError):
    """A request the server cannot even read as meant (e.g. two Authorization headers)."""

    title = "Bad request"


class NotFound(GenserveError):
    title = "Not found"


class Conflict(GenserveError):
    title = "Conflict"


class Forbidden(GenserveError):
    title = "Forbidden"


class Unauthorized(GenserveError):
    """No valid credentials."""

    title = "Unauthorized"


class RateLimited(GenserveError):
    """More requests than the caller's rate allows; retrying after `retry_after_s` helps."""

    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after_s = retry_after_s


class Invalid(GenserveError):
    """The input is well-formed but breaks a rule or a limit."""

    title = "Invalid input"


class TooLarge(Invalid):
    """The input is larger than a configured limit."""

    title = "Input too large"


class UnsupportedFormat(Invalid):
    """The input's file type or content type is not one genserve reads."""

    title = "Unsupported format"


class QuotaExceeded(GenserveError):
    """The caller already has as many of something (active trainings, datasets) as it may; `retry_after_s`, when
    known, is when room may be made by itself (a training ending)."""

    title = "Quota exceeded"

    def __init__(self, detail: str, *, retry_after_s: int | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after_s = retry_after_s


class StorageExceeded(GenserveError):
    """The caller's stored data would exceed its storage quota."""

    title = "Insufficient storage"


class Unavailable(GenserveError):
    """A dependency (Redis, the data files, a download) is not there right now; retrying may help."""

    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after_s = retry_after_s


class TimedOut(GenserveError):
    """The work was not done before its deadline."""

    title = "Timed out"


class TrainingDiverged(GenserveError):
    """A training produced NaN or infinite values and could not recover."""

    title = "Training diverged"
