"""The watchdog: finds trainings that nobody works on any more and puts them back on the queue, or fails them.

It runs every `watchdog_interval_s` in every API process (an asyncio task that runs `run_once` in a thread)
and in every worker's parent process (a daemon thread; it never touches CUDA). A short Redis lock (SET NX PX) lets one
of them act per round. Pure logic over Redis and the artifact store: no FastAPI, no training code.

For each training recorded as queued or running, `worker.state.status.assess` gives its liveness:

- alive (a horse holds the lease) or waiting (RQ has it queued): nothing to do;
- lost (a worker took it and holds no lease: SIGKILL, OOM, a crash) or missing (RQ has no such job: Redis restarted
  empty) for longer than a grace period: a canceled one ends `canceled`; a lost one counts against
  `max_attempts` and is re-queued (it resumes from its last checkpoint) or, past the limit, fails with the
  reason; a missing queued one is simply enqueued again.

The grace period (two lease renewals) starts when a round first sees the training unattended (a Redis key holds the
Redis server time of that first sighting). A horse that outlived a Redis restart renews its lease within it, so
it is never mistaken for lost, and a job that was just dequeued has time to take its lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from models.errors import GenserveError
from models.store import ArtifactStore, utcnow
from worker.state import connection, dispatch, events, keys, lease, webhooks
from worker.state.records import TrainingRecord, TrainingRecords
from worker.state.settings import WorkerSettings
from worker.state.status import Liveness, TrainingStatus, Verdict, assess

log = logging.getLogger("genserve.watchdog")

LOCK_FRACTION = 0.8  # the lock lasts this fraction of a round, so one process acts per round


class Watchdog:
    def __init__(self, store: ArtifactStore, redis: Redis, queue: Queue, settings: WorkerSettings) -> None:
        self.store = store
        self.records = TrainingRecords(store)
        self.redis = redis
        self.queue = queue
        self.settings = settings
        self.grace_s = self.grace_for(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._redis_down = False

    @staticmethod
    def grace_for(settings: WorkerSettings) -> float:
        """How long a training may look unattended before the watchdog acts: two lease renewals."""
        return 2 * settings.lease_ttl_s / lease.RENEWALS_PER_TTL

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Watchdog:
        """A watchdog with its own Redis connection (for a worker's parent process)."""
        redis = connection.connect(settings.redis_target)
        return cls(settings.artifact_store(), redis, Queue(settings.queue_name, connection=redis), settings)

    # --- one round ----------------------------------------------------------------------------------------------
    def run_once(self) -> list[tuple[str, str]]:
        """One round; returns the actions taken as (training id, what). Never raises for a Redis outage."""
        try:
            actions = self._round()
        except RedisError as exc:
            if not self._redis_down:
                log.warning("watchdog: Redis unavailable (%s); trainings are checked again when it answers", exc)
            self._redis_down = True
            return []
        if self._redis_down:
            log.info("watchdog: Redis answers again")
        self._redis_down = False
        return actions

    def _round(self) -> list[tuple[str, str]]:
        interval_ms = int(self.settings.watchdog_interval_s * 1000 * LOCK_FRACTION)
        if not self.redis.set(keys.WATCHDOG_LOCK, self.owner, nx=True, px=max(interval_ms, 100)):
            return []  # another process has this round
        records = [r for r in self.records.list() if not r.is_terminal()]
        if not records:
            return []
        verdicts = assess(self.redis, records)
        seconds, micros = self.redis.time()  # one clock for every process, whatever their hosts' clocks say
        now = seconds + micros / 1e6
        pipe = self.redis.pipeline(transaction=False)
        unattended: list[TrainingRecord] = []
        for record in records:
            if verdicts[record.id].liveness.needs_action():
                unattended.append(record)
            else:
                pipe.delete(keys.unattended(record.id))
        pipe.execute()
        actions = []
        for record in unattended:
            key = keys.unattended(record.id)
            first_seen = f"{record.current_job_id} {now}"
            self.redis.set(key, first_seen, nx=True, ex=max(60, int(self.grace_s * 20)))
            since_raw: Any = self.redis.get(key) or b""
            job, _, since = (since_raw.decode() if isinstance(since_raw, bytes) else str(since_raw)).partition(" ")
            if job != record.current_job_id:  # a sighting of an earlier job: start over
                self.redis.set(key, first_seen, ex=max(60, int(self.grace_s * 20)))
                continue
            if now - float(since or now) < self.grace_s:
                continue
            try:
                what = self.act(record, verdicts[record.id])
            except GenserveError as exc:  # e.g. deleted meanwhile
                log.info("watchdog: training %s: %s", record.id, exc.detail)
                continue
            self.redis.delete(key)
            if what:
                actions.append((record.id, what))
        return actions

    # --- what to do about one unattended training ---------------------------------------------------------------
    def act(self, record: TrainingRecord, verdict: Verdict) -> str | None:
        if events.cancel_requested(self.redis, record.id):
            return self._end(record, TrainingStatus.canceled, None, "canceled (nobody was working on it)")
        worker_lost = verdict.liveness is Liveness.lost or record.status is TrainingStatus.running
        if not worker_lost:
            done = self._requeue(record, "Redis lost the queued job; enqueued again")
            return "re-enqueued (job missing from Redis)" if done else None
        lost = record.lost_workers + 1
        seen = self._last_seen(record.id)
        limit = self.settings.max_attempts
        if lost >= limit:
            reason = f"worker lost {lost} times ({self.settings.env_name('max_attempts')}={limit}); last seen {seen}"
            return self._end(record, TrainingStatus.failed, reason, f"failed: {reason}", lost_workers=lost)
        reason = f"worker lost (last seen {seen}); re-queued, attempt {lost + 1} of {limit}"
        done = self._requeue(record, reason, lost_workers=lost)
        if done:
            log.warning("watchdog: training %s: %s", record.id, reason)
        return f"re-queued after a lost worker ({lost} of {limit})" if done else None

    def _requeue(self, record: TrainingRecord, reason: str, **changes: Any) -> TrainingRecord | None:
        return dispatch.requeue(
            self.records,
            self.queue,
            self.redis,
            self.settings,
            record.id,
            expect_job_id=record.current_job_id,
            reason=reason,
            **changes,
        )

    def _end(
        self, record: TrainingRecord, status: TrainingStatus, error: str | None, what: str, **changes: Any
    ) -> str | None:
        updated = self.records.update_if_owner(
            record.id, record.current_job_id, status=status, error=error, finished_at=utcnow(), **changes
        )
        if updated is None:
            return None
        self.store.delete_checkpoint(record.id)
        log.warning("watchdog: training %s: %s", record.id, what)
        events.publish_status(self.redis, record.id, status, **({"error": error} if error else {}))
        webhooks.enqueue(self.redis, updated, "completed")
        return what

    def _last_seen(self, training_id: str) -> str:
        """Where and when the training was last seen working, for the reason of a failure."""
        holder = lease.last_seen(self.redis, training_id)
        progress = events.latest_progress(self.redis, training_id)
        parts = []
        if holder:
            when = datetime.fromtimestamp(float(holder.get("at", 0)), UTC).isoformat(timespec="seconds")
            parts.append(
                f"{when.replace('+00:00', 'Z')} on worker {holder.get('worker')} "
                f"(pid {holder.get('pid')}, host {holder.get('host')})"
            )
        if progress:
            parts.append(f"at step {progress.step} of {progress.total_steps}")
        return " ".join(parts) or "never (no lease or progress on record)"


def run_in_thread(watchdog: Watchdog, stop: threading.Event) -> threading.Thread:
    """Run rounds every `watchdog_interval_s` until `stop` is set (a worker's parent process)."""

    def loop() -> None:
        while not stop.wait(watchdog.settings.watchdog_interval_s):
            try:
                watchdog.run_once()
            except Exception:  # a bad round must not end the watch (GenserveError, OSError, a torn record...)
                log.exception("watchdog: round failed")

    thread = threading.Thread(target=loop, name="genserve-watchdog", daemon=True)
    thread.start()
    return thread
