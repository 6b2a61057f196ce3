"""API keys with scopes, and a per-key rate limit.

Keys come from GENSERVE_API_KEYS and/or GENSERVE_API_KEYS_FILE as entries `<token>:<scope>[+<scope>...]`
(`sample`: read and generate; `train`: upload, train, cancel, delete). Clients send `Authorization: Bearer <token>`.
Every route declares what it needs where it is defined: `dependencies=[requires("sample")]`, `requires("train")`,
or `PUBLIC`; the check itself (`Guard.authorize`) runs only when keys are configured.
Tokens are kept only as SHA-256 digests and compared in constant time against every configured key, so neither a
match nor its position leaks through timing. Without keys the service is open (and says so at start).

The rate limit is a token bucket per key shared by every API process through Redis, spent from leases kept in
memory (app/rate_limits.py): the check does no I/O, and sampling keeps working while Redis is down.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from redis.asyncio import Redis as AsyncRedis

from app.rate_limits import SharedRateLimit, TokenBucket
from models.errors import BadRequest, Forbidden, RateLimited, Unauthorized

Scope = Literal["sample", "train"]
SCOPES: tuple[Scope, ...] = ("sample", "train")
SECURITY_SCHEME = "HTTPBearer"  # its name in the OpenAPI document, where Swagger UI offers an "Authorize" button
MIN_TOKEN_CHARS = 16  # shorter tokens are guessable; `openssl rand -hex 24` gives 48
FAILURE_BURST = 20  # failed key attempts a client address may make at once, before GENSERVE_AUTH_FAILURES_PER_S
MAX_TRACKED_CLIENTS = 10_000  # addresses whose failures are remembered (the oldest are forgotten first)
CHECKED = "genserve.access_checked"  # set in the ASGI scope once a request's access was checked
KEY_NAME = "genserve.key"  # the ASGI scope's note of the key a request came with (its name, not its token)
ANONYMOUS = "anonymous"  # whose requests they are when no keys are configured


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
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"API key tokens need at least {MIN_TOKEN_CHARS} characters; got one of {len(token)}")
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


def new_key_entry(scopes: str) -> tuple[str, str]:
    """A fresh random token (256 bits, URL-safe) and its `<token>:<scopes>` entry, checked like any configured key."""
    wanted = {s.strip() for s in scopes.split("+")}
    if not wanted <= set(SCOPES):
        raise ValueError(f"scopes are {' or '.join(SCOPES)}, joined with '+'; got {scopes!r}")
    token = secrets.token_urlsafe(32)
    entry = f"{token}:{'+'.join(s for s in SCOPES if s in wanted)}"
    parse_keys([entry])
    return token, entry


def append_key(path: Path, entry: str) -> None:
    """Add a key entry to a keys file, creating it readable by its owner only (it holds the tokens in clear)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(entry + "\n")


class Guard:
    """Authenticates, authorizes by scope and rate-limits requests; one per app, built when keys are configured."""

    def __init__(
        self,
        keys: list[ApiKey],
        rate_per_s: float,
        burst: int,
        failures_per_s: float = 1.0,
        aredis: AsyncRedis | None = None,
    ) -> None:
        self.keys = keys
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.failures_per_s = failures_per_s
        self.rates = SharedRateLimit(aredis, rate_per_s, burst) if rate_per_s > 0 else None
        self.failures: OrderedDict[str, TokenBucket] = OrderedDict()  # by client address

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

    def authorize(self, request: Request, scope: Scope) -> Awaitable[None] | None:
        """Authenticate one request, check that its key has `scope`, and take a token from the key's bucket; an
        awaitable to await first in the rare case that the key's lease of tokens is on its way (app/rate_limits.py).

        Failed attempts are rate-limited per client address (a burst of FAILURE_BURST, then `failures_per_s`), so that
        keys cannot be guessed at the speed of the server; two Authorization headers are refused (400) rather than
        one of them picked.
        """
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            raise BadRequest("send one Authorization header, not several", field=("header", "authorization"))
        client = request.client.host if request.client else "unknown"
        failures = self.failures.get(client)
        if failures is not None and (wait := failures.wait_s()) > 0:
            raise RateLimited(
                "too many failed API key attempts from this address; wait before trying again",
                retry_after_s=max(1, math.ceil(wait)),
            )
        try:
            key = self.identify(headers[0] if headers else None)
        except Unauthorized:
            self._failed(client)
            raise
        if scope not in key.scopes:
            route = getattr(request.scope.get("route"), "path", "")
            raise Forbidden(
                f"this key lacks the `{scope}` scope that {request.method} {route} needs",
                field=("header", "authorization"),
            )
        request.scope[KEY_NAME] = key.name
        if self.rates is None:
            return None
        outcome = self.rates.take(key.digest.hex())
        if isinstance(outcome, float):
            self._limit(outcome)
            return None
        return self._limit_after(outcome)

    async def _limit_after(self, wait: Awaitable[float]) -> None:
        self._limit(await wait)

    def _limit(self, wait: float) -> None:
        if wait > 0:
            raise RateLimited(
                f"rate limit of {self.rate_per_s:g} requests/s (burst {self.burst}) exceeded "
                "(GENSERVE_RATE_LIMIT_PER_S)",
                retry_after_s=max(1, math.ceil(wait)),
            )

    def _failed(self, client: str) -> None:
        if self.failures_per_s <= 0:
            return
        bucket = self.failures.get(client)
        if bucket is None:
            bucket = self.failures[client] = TokenBucket(self.failures_per_s, FAILURE_BURST)
            if len(self.failures) > MAX_TRACKED_CLIENTS:
                self.failures.popitem(last=False)
        else:
            self.failures.move_to_end(client)
        bucket.take()


class Requires:
    """A route's declared access: the scope its requests need, or None for a public route (the probes).

    A FastAPI dependency, and also called directly by `LeanRoute` through `check` (synchronous, so that the hot
    route saves a coroutine per request: it returns an awaitable only in the rare case that the rate limit waits for
    a lease of tokens, which the caller then awaits). It finds the app's `Guard` on `app.state.guard` (None when no
    keys are configured: then every route is open).
    """

    def __init__(self, scope: Scope | None) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> None:
        pending = self.check(request)
        if pending is not None:
            await pending

    def check(self, request: Request) -> Awaitable[None] | None:
        if self.scope is not None:
            guard: Guard | None = request.app.state.guard
            if guard is not None and CHECKED not in request.scope:
                request.scope[CHECKED] = True
                return guard.authorize(request, self.scope)
        return None

    def __repr__(self) -> str:
        return f"Requires({self.scope!r})"


class CheckedRoute(APIRoute):
    """An API route that checks its declared access before anything else, the body included: FastAPI reads (and
    spools) a route's body before it solves the route's dependencies, which would let an anonymous client make the
    server hold an upload before being refused. The dependency itself then sees the request already checked."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        checks = declared_access(self)

        async def checked(request: Request) -> Response:
            for access in checks:
                pending = access.check(request)
                if pending is not None:
                    await pending
            return await handler(request)

        return checked


def owner_of(request: Request) -> str:
    """Whose request this is, for quotas: the name of its API key, or ANONYMOUS on an open service."""
    return str(request.scope.get(KEY_NAME, ANONYMOUS))


def requires(scope: Scope) -> Any:
    """The dependency that declares a route's scope: `dependencies=[requires("sample")]`."""
    return Depends(Requires(scope))


PUBLIC: Any = Depends(Requires(None))  # declares a route public: it answers without a key


def declared_access(route: APIRoute) -> list[Requires]:
    """The access declarations among a route's dependencies (a well-declared route has exactly one)."""
    return [d.call for d in route.dependant.dependencies if isinstance(d.call, Requires)]


def document_bearer_auth(app: FastAPI) -> None:
    """Put the bearer scheme into the app's OpenAPI document, on every operation whose route needs a scope."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "API key, as `Authorization: Bearer <token>`",
        }
        for route in app.routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            if any(r.scope is not None for r in declared_access(route)):
                for method in route.methods or ():
                    operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                    if operation is not None:
                        operation["security"] = [{SECURITY_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
