"""Liveness leases: a running training's work horse keeps a short-lived Redis key fresh; the watchdog reads it.

`genserve:training:{id}:lease` holds `{"job_id", "worker", "pid", "host", "at"}` and expires after
GENSERVE_LEASE_TTL_S unless renewed; a daemon thread in the horse renews it every third of that, so it stays fresh
through a long step or the end-of-training metrics. `...:seen` keeps the last renewal for a week, so a failure can
say where and when the training was last seen. The API and the watchdog read it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from worker.state import keys

log = logging.getLogger("genserve.worker")

SEEN_TTL_S = 7 * 24 * 3600
RENEWALS_PER_TTL = 3


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def holders(redis: Redis, training_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """The lease of each training (None where nobody holds one), in one round trip."""
    if not training_ids:
        return {}
    raw: list[Any] = redis.mget([keys.lease(t) for t in training_ids])  # type: ignore[assignment]
    return {t: _decode(r) for t, r in zip(training_ids, raw, strict=True)}


def last_seen(redis: Redis, training_id: str) -> dict[str, Any] | None:
    return _decode(redis.get(keys.seen(training_id)))


class LeaseKeeper:
    """Holds a training's lease from a daemon thread until `release()`; a Redis outage only delays renewals."""

    def __init__(self, redis: Redis, training_id: str, job_id: str, worker: str, ttl_s: float) -> None:
        self.redis = redis
        self.training_id = training_id
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self.interval_s = ttl_s / RENEWALS_PER_TTL
        self.holder = {"job_id": job_id, "worker": worker, "pid": os.getpid(), "host": socket.gethostname()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{training_id}", daemon=True)
        self._failing = False

    def acquire(self) -> None:
        """Take the lease now, then keep it fresh (while Redis is down, from its first renewal after it returns)."""
        try:
            self._renew()
        except RedisError as exc:
            log.warning("training %s: cannot take the lease yet: %s", self.training_id, exc)
            self._failing = True
        self._thread.start()

    def _renew(self) -> None:
        value = json.dumps({**self.holder, "at": time.time()})
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.lease(self.training_id), value, px=self.ttl_ms)
        pipe.set(keys.seen(self.training_id), value, ex=SEEN_TTL_S)
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._renew()
                if self._failing:
                    log.info("training %s: lease renewed again", self.training_id)
                self._failing = False
            except RedisError as exc:
                if not self._failing:
                    log.warning("training %s: cannot renew the lease: %s", self.training_id, exc)
                self._failing = True

    def release(self) -> None:
        """Stop renewing and drop the lease, if it is still ours."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            current = _decode(self.redis.get(keys.lease(self.training_id)))
            if current is not None and current.get("job_id") == self.holder["job_id"]:
                self.redis.delete(keys.lease(self.training_id))
        except RedisError as exc:
            log.warning("training %s: cannot release the lease (it expires by itself): %s", self.training_id, exc)
