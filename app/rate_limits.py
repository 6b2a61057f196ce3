"""The per-key rate limit, shared by every API process (of one machine or many) through Redis.

One token bucket per key lives in Redis (a Lua script refills and takes atomically, on Redis's clock). A process
does not ask Redis for every request: it takes a small lease of tokens (LEASE_SHARE of the burst) and spends it
locally, asking for the next lease in the background when it runs low, so the check is synchronous and free of I/O
on the hot path; only a request that finds the lease empty while the next one is on its way waits for it (the first
request of a key in a process, or a key sending faster than a lease's round trip). No request is admitted without a
token from the shared bucket, so the processes together never exceed the rate; at most one lease per process sits
unspent, a one-time offset of a few percent of the burst.

When Redis does not answer, each process falls back on a bucket of its own (the rate per process, as before this
module existed) until Redis answers again: sampling keeps working while Redis is down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from worker.state import keys

log = logging.getLogger("genserve.api")

LEASE_SHARE = 0.05  # a lease is this share of the burst (at least one token)
LOW_WATER_SHARE = 0.5  # ask for the next lease when this share of a lease is left
REDIS_RETRY_S = 5.0  # after Redis failed to answer, the per-process buckets decide for this long
LEASE_WAIT_S = 1.0  # the longest a request waits for a lease on its way (then its process's own bucket decides)

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, tokens wanted. Returns {granted, ms until the next token (0
# while one is left), whole tokens left}.
TAKE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]) or burst, tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - stamp) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait_ms = 0
if tokens < 1 then wait_ms = math.ceil((1 - tokens) / rate * 1000) end
return {granted, wait_ms, math.floor(tokens)}
"""


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def wait_s(self) -> float:
        """0 when a token is there now, else the seconds until one is (nothing taken)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> float:
        """0 when a request may go now (a token is taken), else the seconds until it may."""
        wait = self.wait_s()
        if wait == 0:
            self.tokens -= 1
        return wait


@dataclass
class Lease:
    """A key's tokens taken from the shared bucket and not spent yet, in this process."""

    tokens: int = 0
    pending: asyncio.Task[None] | None = None  # the next lease, on its way
    empty_until: float = 0.0  # the shared bucket said: no token before this (monotonic time)


class SharedRateLimit:
    """`take(key)`: 0 when a request of `key` may go now, else the seconds until it may."""

    def __init__(self, aredis: AsyncRedis | None, rate_per_s: float, burst: int) -> None:
        self.aredis = aredis
        self.rate = rate_per_s
        self.burst = burst
        self.lease_size = max(1, math.floor(burst * LEASE_SHARE))
        self.low_water = math.floor(self.lease_size * LOW_WATER_SHARE)
        self.leases: dict[str, Lease] = {}
        self.local: dict[str, TokenBucket] = {}  # the fallback while Redis is away
        self.redis_away_until = 0.0
        self.script = aredis.register_script(TAKE) if aredis is not None else None

    def take(self, key: str) -> float | Awaitable[float]:
        """0 when a request of `key` may go now, else the seconds until it may; or, when the lease is empty and the
        next is on its way, an awaitable of that answer."""
        return self._decide(key, may_wait=True)

    def _decide(self, key: str, may_wait: bool) -> float | Awaitable[float]:
        now = time.monotonic()
        if self.script is None or now < self.redis_away_until:
            return self._take_locally(key)
        lease = self.leases.get(key)
        if lease is None:
            lease = self.leases[key] = Lease()
        if lease.tokens <= self.low_water:
            self._refill(key, lease)
        if lease.tokens > 0:
            lease.tokens -= 1
            return 0.0
        if lease.pending is not None and may_wait:
            return self._after(key, lease.pending)
        return max(lease.empty_until - now, 1.0 / self.rate)

    async def _after(self, key: str, pending: asyncio.Task[None]) -> float:
        try:
            await asyncio.wait_for(asyncio.shield(pending), LEASE_WAIT_S)
        except TimeoutError:
            return self._take_locally(key)
        decided = self._decide(key, may_wait=False)
        assert isinstance(decided, float)
        return decided

    def _take_locally(self, key: str) -> float:
        bucket = self.local.get(key)
        if bucket is None:
            bucket = self.local[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def _refill(self, key: str, lease: Lease) -> None:
        if lease.pending is not None or time.monotonic() < lease.empty_until:
            return
        try:
            lease.pending = asyncio.get_running_loop().create_task(self._fetch(key, lease))
        except RuntimeError:  # no event loop (a synchronous caller): its process's own bucket decides
            return

    async def _fetch(self, key: str, lease: Lease) -> None:
        assert self.script is not None
        try:
            granted, wait_ms, left = await self.script(
                keys=[keys.rate_limit(key)], args=[self.rate, self.burst, self.lease_size]
            )
        except RedisError as exc:
            log.warning("rate limit: Redis did not answer (%s); each API process limits on its own for now", exc)
            self.redis_away_until = time.monotonic() + REDIS_RETRY_S
        else:
            lease.tokens += int(granted)
            lease.empty_until = 0.0 if int(left) >= 1 else time.monotonic() + int(wait_ms) / 1000
        finally:
            lease.pending = None
