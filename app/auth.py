"""API keys with scopes, and a per-key rate limit.

Keys come from GENSERVE_API_KEYS and/or GENSERVE_API_KEYS_FILE as entries `<token>:<scope>[+<scope>...]`
(`sample`: read and generate; `train`: upload, train, cancel, delete). Clients send `Authorization: Bearer <token>`.
Tokens are kept only as SHA-256 digests and compared in constant time against every configured key, so neither a
match nor its position leaks through timing. Without keys the service is open (and says so at start).

The rate limit is a token bucket per key and per API process, kept in memory: it costs nothing on Redis, and
sampling keeps working while Redis is down.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from models.errors import Forbidden, RateLimited, Unauthorized

Scope = Literal["sample", "train"]
SCOPES: tuple[Scope, ...] = ("sample", "train")
GENERATE_SUFFIXES = ("/samples", "/reconstructions", "/interpolations", "/scores")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})  # probes work without a key

# Shown in OpenAPI, so Swagger UI offers an "Authorize" button; the check itself is `Guard.__call__`.
bearer_scheme = HTTPBearer(auto_error=False, description="API key, as `Authorization: Bearer <token>`")


@dataclass(frozen=True)
class ApiKey:
    name: str  # the digest's prefix: safe to log, enough to tell keys apart
    digest: bytes
    scopes: frozenset[str]


def parse_keys(entries: list[str]) -> list[ApiKey]:
    """Keys from `<token>:<scope>[+<scope>]` entries; a malformed entry is a configuration error."""
    keys = []
    for entry in entries:
        token, sep, scopes_text = entry.strip().rpartition(":")
        scopes = frozenset(s.strip() for s in scopes_text.split("+") if s.strip())
        if not sep or not token or not scopes or not scopes <= set(SCOPES):
            raise ValueError(f"API key entries look like <token>:sample+train; got one ending {entry[-12:]!r}")
        digest = hashlib.sha256(token.encode()).digest()
        keys.append(ApiKey(name=digest.hex()[:8], digest=digest, scopes=scopes))
    return keys


def load_keys(inline: str, path: Path | None) -> list[ApiKey]:
    entries = [e for e in inline.split(",") if e.strip()]
    if path is not None:
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                entries.append(line)
    return parse_keys(entries)


def required_scope(method: str, path: str) -> Scope:
    """Reading and generating need `sample`; everything that changes state needs `train`."""
    if method in ("GET", "HEAD") or (method == "POST" and path.endswith(GENERATE_SUFFIXES)):
        return "sample"
    return "train"


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> float:
        """0 when a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Guard:
    """The dependency on every protected route: authenticate, authorize by scope, rate-limit."""

    def __init__(self, keys: list[ApiKey], rate_per_s: float, burst: int) -> None:
        self.keys = keys
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.buckets: dict[bytes, TokenBucket] = {}

    def identify(self, header: str | None) -> ApiKey:
        if not header or not header.lower().startswith("bearer "):
            raise Unauthorized(
                "an API key is required: send `Authorization: Bearer <token>`", field=("header", "authorization")
            )
        digest = hashlib.sha256(header[7:].strip().encode()).digest()
        found = None
        for key in self.keys:  # every key is compared, whatever matched earlier
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise Unauthorized("the API key is not valid", field=("header", "authorization"))
        return found

    async def __call__(
        self, request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
    ) -> None:
        """As a FastAPI dependency; the credentials parameter only puts the bearer scheme into the OpenAPI schema."""
        await self.check(request)

    async def check(self, request: Request) -> None:
        """Authenticate, authorize and rate-limit one request (also called directly by `LeanRoute`)."""
        if request.scope["path"] in PUBLIC_PATHS:
            return
        key = self.identify(request.headers.get("authorization"))
        route = request.scope.get("route")
        scope = required_scope(request.method, str(getattr(route, "path", request.scope["path"])))
        if scope not in key.scopes:
            raise Forbidden(
                f"this key lacks the `{scope}` scope that {request.method} {getattr(route, 'path', '')} needs",
                field=("header", "authorization"),
            )
        if self.rate_per_s > 0:
            bucket = self.buckets.get(key.digest)
            if bucket is None:
                bucket = self.buckets[key.digest] = TokenBucket(self.rate_per_s, self.burst)
            wait = bucket.take()
            if wait > 0:
                raise RateLimited(
                    f"rate limit of {self.rate_per_s:g} requests/s (burst {self.burst}) exceeded "
                    "(GENSERVE_RATE_LIMIT_PER_S)",
                    retry_after_s=max(1, math.ceil(wait)),
                )
