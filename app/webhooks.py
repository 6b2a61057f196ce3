"""Webhooks, the sending side: URL checks at request time, and the delivery loop every API process runs.

Deliveries (worker/state/webhooks.py) wait in a Redis sorted set by due time. Each API process polls it, claims a due
delivery with a lease (a Lua compare-and-set on its score, so two processes never send one attempt twice, and a
process that dies mid-attempt lets another retry after the lease), and sends it apart from everything else: an
attempt is one POST with a timeout and no redirects, from a task bounded by MAX_IN_FLIGHT. Failures retry with
exponential back-off (GENSERVE_WEBHOOK_RETRY_BASE_S x 1, 6, 24, 60, 120: 5 s to 10 min by default, 6 tries over
17.6 min), a receiver's Retry-After lengthens a wait (up to an hour). Every attempt goes into the training's delivery
log (GET /v1/trainings/{id}/deliveries).

Signed per the Standard Webhooks spec: headers `webhook-id` (the same on every attempt of one delivery),
`webhook-timestamp` and `webhook-signature` (v1: HMAC-SHA256 over "id.timestamp.body" with GENSERVE_WEBHOOK_SECRET,
`whsec_<base64>`), by the `standardwebhooks` package.

Server-side request forgery: a URL must be http(s) to a host whose every address is public (not loopback, private,
link-local, multicast, reserved or unspecified) unless GENSERVE_WEBHOOK_ALLOW names the host or a network holding
the address; checked when the training is requested and again before every attempt (the name may resolve elsewhere
by then).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from standardwebhooks.webhooks import Webhook

from app.schemas import Training
from app.settings import Settings
from models.errors import Invalid
from models.store import utcnow
from worker.state import keys
from worker.state.webhooks import DELIVERY_TTL_S

log = logging.getLogger("genserve.webhooks")

FIELD = ("body", "webhook")
BACKOFF = (1, 6, 24, 60, 120)  # waits after each failed attempt, in units of GENSERVE_WEBHOOK_RETRY_BASE_S
MAX_RETRY_AFTER_S = 3600
POLL_S = 0.25
BATCH = 16
MAX_IN_FLIGHT = 32  # attempts under way at once in one API process
LOG_KEEP = 200  # entries kept in a training's delivery log
LOG_TTL_S = 7 * 24 * 3600
ERROR_CHARS = 200
# Claim a due delivery: move its due time to the end of a lease, only if it is still due (another process may have
# claimed it, or it was rescheduled, since we read it).
CLAIM = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


# --- URL checks -------------------------------------------------------------------------------------------------------
def _allowed(host: str, addresses: list[str], allow: list[str]) -> tuple[bool, list[str]]:
    """Whether the host is allowed by name, and the addresses that are neither public nor allowed."""
    if host.lower() in {a.lower() for a in allow}:
        return True, []
    networks = []
    for entry in allow:
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(entry, strict=False))
    refused = []
    for raw in addresses:
        ip = ipaddress.ip_address(raw.split("%")[0])
        if any(ip in net for net in networks):
            continue
        if not ip.is_global or ip.is_multicast:
            refused.append(raw)
    return False, refused


def check_url(url: str, settings: Settings) -> None:
    """422 naming `webhook` unless the URL may receive deliveries (see the module's docstring)."""
    if not settings.webhook_secret.get_secret_value():
        raise Invalid(
            "this server cannot sign webhooks: GENSERVE_WEBHOOK_SECRET is not set (ask its operator)", field=FIELD
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("webhook must be an http:// or https:// URL with a host", field=FIELD)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Invalid("webhook has an invalid port", field=FIELD) from None
    addresses = resolve(parts.hostname, port)
    if not addresses:
        raise Invalid(f"webhook host {parts.hostname!r} does not resolve", field=FIELD)
    by_name, refused = _allowed(parts.hostname, addresses, settings.webhook_allowed)
    if not by_name and refused:
        raise Invalid(
            f"webhook host {parts.hostname!r} resolves to a non-public address ({refused[0]}); deliveries go to "
            "public addresses only, unless the operator allows the host or its network (GENSERVE_WEBHOOK_ALLOW)",
            field=FIELD,
        )


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def sign(secret: str, delivery_id: str, body: str, when: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(math.floor(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery_id, when, body),
        "content-type": "application/json",
        "user-agent": "genserve-webhooks",
    }


def body_of(delivery: dict[str, Any]) -> str:
    """The payload: `{"type": "training.<event>", "timestamp", "data": Training}` as the training was at the event."""
    data = Training.model_validate(delivery["record"]).model_dump(mode="json")
    payload = {"type": f"training.{delivery['event']}", "timestamp": delivery["created_at"], "data": data}
    if delivery.get("extra"):
        payload["preview"] = delivery["extra"]
    return json.dumps(payload)


# --- delivery ---------------------------------------------------------------------------------------------------------
class Deliverer:
    """The delivery loop of one API process."""

    def __init__(self, aredis: AsyncRedis, settings: Settings) -> None:
        self.redis = aredis
        self.settings = settings
        self.claim = aredis.register_script(CLAIM)
        self.slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task[None]] = set()
        self.client = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except RedisError as exc:
                log.debug("webhooks: Redis unavailable (%s)", exc)
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_S)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()

    async def tick(self) -> None:
        now = time.time()
        due: list[Any] = await self.redis.zrangebyscore(keys.WEBHOOKS_DUE, 0, now, start=0, num=BATCH)
        for raw in due:
            if self.slots.locked():
                return
            delivery_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            lease_until = now + self.settings.webhook_timeout_s + 30
            if await self.claim(keys=[keys.WEBHOOKS_DUE], args=[delivery_id, now, lease_until]):
                await self.slots.acquire()
                task = asyncio.create_task(self._attempt(delivery_id))
                self.tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhooks: an attempt failed unexpectedly", exc_info=task.exception())

    async def _attempt(self, delivery_id: str) -> None:
        raw = await self.redis.get(keys.webhook(delivery_id))
        if raw is None:  # expired: nothing left to send
            await self.redis.zrem(keys.WEBHOOKS_DUE, delivery_id)
            return
        delivery = json.loads(raw)
        delivery.setdefault("body", body_of(delivery))  # frozen at the first attempt: every retry sends the same
        delivery["attempts"] += 1
        status, error, retry_after = await self._send(delivery)
        entry: dict[str, Any] = {
            "delivery_id": delivery_id,
            "event": delivery["event"],
            "attempt": delivery["attempts"],
            "at": utcnow(),
            "status_code": status,
            "error": error,
            "next_attempt_at": None,
        }
        ok = status is not None and 200 <= status < 300
        if ok or delivery["attempts"] > len(BACKOFF):
            await self.redis.zrem(keys.WEBHOOKS_DUE, delivery_id)
            await self.redis.delete(keys.webhook(delivery_id))
            if not ok:
                entry["error"] = f"{error or f'status {status}'}; gave up after {delivery['attempts']} attempts"
        else:
            wait = BACKOFF[delivery["attempts"] - 1] * self.settings.webhook_retry_base_s
            if retry_after is not None:
                wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
            entry["next_attempt_at"] = (
                datetime.fromtimestamp(time.time() + wait, UTC).isoformat().replace("+00:00", "Z")
            )
            await self.redis.set(keys.webhook(delivery_id), json.dumps(delivery), ex=DELIVERY_TTL_S)
            await self.redis.zadd(keys.WEBHOOKS_DUE, {delivery_id: time.time() + wait})
        log_key = keys.deliveries(delivery["training_id"])
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(log_key, json.dumps(entry))
        pipe.ltrim(log_key, -LOG_KEEP, -1)
        pipe.expire(log_key, LOG_TTL_S)
        await pipe.execute()

    async def _send(self, delivery: dict[str, Any]) -> tuple[int | None, str | None, float | None]:
        """(status code, error, Retry-After seconds) of one POST."""
        url = delivery["url"]
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(
            None, resolve, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        )
        by_name, refused = _allowed(parts.hostname or "", addresses, self.settings.webhook_allowed)
        if not addresses or (not by_name and refused):
            return None, f"refused: {parts.hostname} resolves to {refused[0] if refused else 'nothing'}", None
        headers = sign(
            self.settings.webhook_secret.get_secret_value(), delivery["id"], delivery["body"], datetime.now(UTC)
        )
        try:
            response = await self.client.post(url, content=delivery["body"].encode(), headers=headers)
        except httpx.TimeoutException:
            return None, f"no answer within {self.settings.webhook_timeout_s:g} s", None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS], None
        retry_after = None
        with contextlib.suppress(ValueError):
            retry_after = float(response.headers.get("retry-after", ""))
        return response.status_code, None, retry_after


async def delivery_log(aredis: AsyncRedis, training_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in await aredis.lrange(keys.deliveries(training_id), 0, -1)]
