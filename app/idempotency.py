"""`Idempotency-Key` on the routes that create (trainings, dataset uploads): a client that retries a POST after a
timeout gets the resource of its first try, never a second one.

The key is kept in Redis (shared by every API replica) for IDEMPOTENCY_TTL_S, per API key and route, with a
fingerprint of the request: the same key with another request is a 422 naming the header. The first request
claims the key atomically (SET NX); concurrent duplicates wait for it to finish and then answer what it answered.
A request that fails frees the key, so that a retry may succeed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Header
from redis import Redis

from models.errors import Conflict, Invalid
from worker.state import keys

IDEMPOTENCY_TTL_S = 24 * 3600
PENDING_TTL_S = 600  # a claim whose request died without a word frees the key after this long
WAIT_S = 30.0  # how long a duplicate waits for the first request to finish
POLL_S = 0.05
MAX_KEY_LENGTH = 255
REPLAYED = "Idempotent-Replayed"  # response header, "true" on an answer that repeats an earlier request's
IDEMPOTENCY_KEY_DOC = (
    "A key of your choice (e.g. a UUID), up to 255 printable characters: a retry with the same key and the same "
    "request within 24 hours answers the first request's resource instead of creating another; the same key with "
    "another request is a 422."
)
# The parameter as routes declare it: the schema states what `check_key` enforces (the check stays the one place).
IDEMPOTENCY_KEY_HEADER = Header(
    description=IDEMPOTENCY_KEY_DOC, json_schema_extra={"pattern": f"^[\\x20-\\x7e]{{1,{MAX_KEY_LENGTH}}}$"}
)
HEADER = ("header", "idempotency-key")


def fingerprint(*parts: Any) -> str:
    """A digest of what makes two requests the same request."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Replay:
    """The first request's answer: its resource and status code."""

    resource_id: str
    status_code: int


@dataclass
class Claim:
    """This request holds the key: `finish` records its answer, `abandon` frees the key."""

    redis: Redis
    key: str
    print_: str

    def finish(self, resource_id: str, status_code: int) -> None:
        value = {"fingerprint": self.print_, "resource_id": resource_id, "status_code": status_code}
        self.redis.set(self.key, json.dumps(value), ex=IDEMPOTENCY_TTL_S)

    def abandon(self) -> None:
        self.redis.delete(self.key)


def check_key(value: str) -> str:
    if not 1 <= len(value) <= MAX_KEY_LENGTH or not value.isascii() or not value.isprintable():
        raise Invalid(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
            field=HEADER,
            limit=MAX_KEY_LENGTH,
        )
    return value


def claim(redis: Redis, owner: str, route: str, key: str, print_: str) -> Claim | Replay:
    """Claim `key` for this request, or the answer of the request that claimed it first (waiting for it to finish).
    422 when the key was used with another request; 409 when the first is still running after WAIT_S."""
    name = keys.idempotency(route, fingerprint(owner, check_key(key)))
    pending = json.dumps({"fingerprint": print_, "pending": True})
    deadline = time.monotonic() + WAIT_S
    while True:
        if redis.set(name, pending, nx=True, ex=PENDING_TTL_S):
            return Claim(redis, name, print_)
        raw = redis.get(name)
        if raw is None:
            continue  # freed meanwhile: claim it
        held = json.loads(raw)
        if held["fingerprint"] != print_:
            raise Invalid(
                "this Idempotency-Key was used with another request in the last 24 hours; use a new key for a new "
                "request",
                field=HEADER,
            )
        if not held.get("pending"):
            return Replay(held["resource_id"], held["status_code"])
        if time.monotonic() > deadline:
            raise Conflict("a request with this Idempotency-Key is still in progress; retry later", field=HEADER)
        time.sleep(POLL_S)
