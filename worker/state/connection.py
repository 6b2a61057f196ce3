"""The one way to connect to Redis: with timeouts, so that a Redis outage fails a call instead of hanging it.

A `RedisTarget` says where Redis is: a plain server by URL, or the master that Redis Sentinel names (settings
`GENSERVE_REDIS_SENTINELS`, `GENSERVE_REDIS_SENTINEL_MASTER`). A Sentinel client asks the sentinels for the master's
address whenever it opens a connection, and drops connections to a master that was demoted, so after a failover the
next command reaches the new master; during the switch commands fail with a `redis.exceptions.ConnectionError`
(`MasterNotFoundError` while no master is known, "The previous master is now a slave" for a demoted one), which the
API answers with 503 + Retry-After and the workers ride out like any Redis outage. Every function here takes a
target or, as before, a plain URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
PING_TIMEOUT_S = 0.5
SENTINEL_TIMEOUT_S = 1.0  # a sentinel that does not answer within this is skipped for the next one
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_MASTER = "mymaster"


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is. Without `sentinels`: the server `url` names. With them: the master they know as `master`; the
    URL then gives only the database number (and a username or password when it has them). `password` is the data
    servers' (a password in the URL wins); `sentinel_password` the sentinels' own."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        """For logs: no password."""
        from worker.state.settings import safe_url

        if not self.sentinels:
            return safe_url(self.url)
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"master {self.master!r} (db {parse_url(self.url).get('db', 0)}) via sentinels {hosts}"


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (`[v6 address]:port`; the port defaults to 26379) as (host, port) pairs; a ValueError
    names the part that is not."""
    found = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        port: str | None
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else (rest or None)
        else:
            host, colon, rest = part.partition(":")
            port = rest if colon else None
        port = str(DEFAULT_SENTINEL_PORT) if port is None else port
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r} is not host:port")
        found.append((host, int(port)))
    return tuple(found)


def _target(target: str | RedisTarget) -> RedisTarget:
    return target if isinstance(target, RedisTarget) else RedisTarget(target)


def _master_kwargs(target: RedisTarget) -> dict[str, Any]:
    """What the master's connections take from the URL and the settings (db, username, password)."""
    from_url = parse_url(target.url)
    kwargs = {k: from_url[k] for k in ("db", "username", "password") if k in from_url}
    if target.password and "password" not in kwargs:
        kwargs["password"] = target.password
    return kwargs


def _sentinel_kwargs(target: RedisTarget, timeout_s: float, *, asyncio: bool = False) -> dict[str, Any]:
    """How to reach each sentinel: short timeouts and no retries (redis-py's default client retries ten times with
    back-off), so that a sentinel that is down costs a refused connection and the next one is asked."""
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "retry": AsyncRetry(NoBackoff(), 0) if asyncio else Retry(NoBackoff(), 0),
    }
    if target.sentinel_password:
        kwargs["password"] = target.sentinel_password
    return kwargs


class _SentinelConnection(SentinelManagedConnection):
    """redis-py's connection to a Sentinel master, but one that, like every other connection class, is closed when a
    read fails or is interrupted: redis-py's keeps it (`disconnect_on_error=False` by default, redis/redis-py#4292),
    so the next command on it reads the previous command's reply, or waits behind it. An RQ worker stopped (SIGTERM)
    while it waits in BLPOP then hangs in its teardown until the BLPOP times out."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("disconnect_on_error", True)
        return super().read_response(*args, **kwargs)


class _SentinelMaster(Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    sentinel_manager: Sentinel | None = None  # (not `sentinel`: that is the SENTINEL command)

    def close(self) -> None:
        try:
            super().close()
        finally:
            for client in self.sentinel_manager.sentinels if self.sentinel_manager is not None else ():
                client.close()


class _AsyncSentinelMaster(AsyncRedis):
    """The master's asyncio client; closing it also closes its connections to the sentinels."""

    sentinel_manager: AsyncSentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            for client in self.sentinel_manager.sentinels if self.sentinel_manager is not None else ():
                await client.aclose()


def _sync_client(target: RedisTarget, connect_timeout_s: float, socket_timeout_s: float | None) -> Redis:
    if not target.sentinels:
        return Redis.from_url(
            target.url,
            password=target.password or None,  # from_url lets the URL's own password win
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
        )
    sentinel = Sentinel(
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target, min(connect_timeout_s, SENTINEL_TIMEOUT_S))
    )
    client = sentinel.master_for(
        target.master,
        redis_class=_SentinelMaster,
        connection_class=_SentinelConnection,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        **_master_kwargs(target),
    )
    client.sentinel_manager = sentinel
    return client  # type: ignore[no-any-return]


def connect(target: str | RedisTarget, *, socket_timeout_s: float | None = SOCKET_TIMEOUT_S) -> Redis:
    """A client of `target` (a RedisTarget or a URL). `socket_timeout_s=None` for connections that block on purpose
    (RQ's BLPOP)."""
    return _sync_client(_target(target), CONNECT_TIMEOUT_S, socket_timeout_s)


def connect_async(target: str | RedisTarget, max_connections: int | None = None) -> AsyncRedis:
    """An asyncio client of `target`; no socket timeout, since blocking stream reads (SSE) wait on purpose."""
    target = _target(target)
    if not target.sentinels:
        return AsyncRedis.from_url(
            target.url,
            password=target.password or None,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            max_connections=max_connections,
        )
    sentinel = AsyncSentinel(
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target, SENTINEL_TIMEOUT_S, asyncio=True)
    )
    client = sentinel.master_for(
        target.master,
        redis_class=_AsyncSentinelMaster,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        max_connections=max_connections,
        **_master_kwargs(target),
    )
    client.sentinel_manager = sentinel
    return client  # type: ignore[no-any-return]


def answers(target: str | RedisTarget, timeout_s: float = PING_TIMEOUT_S) -> bool:
    """True when Redis answers PING at `target` (with Sentinel: a master is known and answers)."""
    try:
        with _sync_client(_target(target), timeout_s, timeout_s) as client:
            return bool(client.ping())
    except RedisError:
        return False
