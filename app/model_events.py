"""Hot reload across API replicas: model created/deleted announcements over Redis pub/sub.

Deletions are also caught without this (every request checks the store), so a lost message only delays an eviction
or a preload; the listener reconnects with backoff while Redis is down and never takes the API with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from app.model_refs import ModelRefs
from app.serving.model_cache import ModelCache
from worker.state.keys import MODELS_CHANNEL

log = logging.getLogger("genserve.api")

RECONNECT_MAX_S = 30.0
POLL_S = 1.0  # the longest a stopping listener takes to notice


async def listen(
    aredis: AsyncRedis, cache: ModelCache, preload_new: bool, stop: asyncio.Event, refs: ModelRefs | None = None
) -> None:
    """Evict deleted models; load new ones ahead of their first request when `preload_new`; return once `stop` is set.

    The listener polls with a timeout instead of blocking in `pubsub.listen()`, because the Redis client can swallow
    a cancellation that arrives while it reads (seen: a cancelled listener waited forever, and the API's shutdown
    with it); a set `stop` ends it within POLL_S whatever happens to a cancellation.
    """
    backoff = 0.5
    while not stop.is_set():
        try:
            async with aredis.pubsub() as pubsub:
                await pubsub.subscribe(MODELS_CHANNEL)
                backoff = 0.5
                while not stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_S)
                    if message is not None and message.get("type") == "message":
                        await _handle(message["data"], cache, preload_new, refs)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.debug("model events: redis unavailable (%s); retrying in %.1fs", exc, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)


async def _handle(raw: bytes | str, cache: ModelCache, preload_new: bool, refs: ModelRefs | None = None) -> None:
    try:
        event = json.loads(raw)
        if event.get("event") == "name":  # an alias moved or went: re-read the name at its next use
            if refs is not None:
                refs.forget(str(event["name"]))
            return
        model_id = str(event["id"])
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("model events: ignoring malformed message %r", raw)
        return
    if event.get("event") == "deleted":
        await cache.evict(model_id)
    elif event.get("event") == "created" and preload_new:
        await cache.preload([model_id])
