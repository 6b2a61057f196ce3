"""The one way to connect to Redis: with timeouts, so that a Redis outage fails a call instead of hanging it."""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
PING_TIMEOUT_S = 0.5


def connect(url: str, *, socket_timeout_s: float | None = SOCKET_TIMEOUT_S) -> Redis:
    """A client for `url`. `socket_timeout_s=None` for connections that block on purpose (RQ's BLPOP)."""
    return Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=socket_timeout_s)


def connect_async(url: str, max_connections: int | None = None) -> AsyncRedis:
    """An asyncio client for `url`; no socket timeout, since blocking stream reads (SSE) wait on purpose."""
    return AsyncRedis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S, max_connections=max_connections)


def answers(url: str, timeout_s: float = PING_TIMEOUT_S) -> bool:
    """True when a Redis server answers PING at `url`."""
    try:
        with Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s) as client:
            return bool(client.ping())
    except RedisError:
        return False
