"""`genserve worker`: an RQ worker on the training queue, plus the watchdog, surviving Redis outages.

RQ forks a work horse per job; the parent never touches CUDA (it imports torch only to make job start-up fast, which
does not initialize CUDA), so a GPU job initializes CUDA inside its own horse.

What `GenserveWorker` changes in RQ's worker:
- SIGTERM (warm shutdown): RQ would wait for the running job to finish, hours for a training. The parent forwards the
  signal to the horse, whose handler (worker/preempt.py) makes the training checkpoint at its next step and go back
  on the queue; the horse then ends and the parent exits 0, within seconds. A second SIGTERM kills the horse (RQ's
  cold shutdown); the watchdog then re-queues the training as a lost one.
- Redis outages: RQ retries while it waits for a job, but gives up (exits) when Redis fails anywhere else. Heartbeats
  while a horse trains ignore Redis errors (the horse goes on; the watchdog reads the horse's own lease), and
  `run_worker` starts the loop again once Redis answers, so the process outlives the outage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import StopRequested

from models.objects import S3Objects
from worker import preempt
from worker.state import connection, dispatch
from worker.state.settings import WorkerSettings, get_worker_settings
from worker.state.watchdog import Watchdog, run_in_thread

log = logging.getLogger("genserve.worker")

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0


class GenserveWorker(Worker):
    max_connection_wait_time = RECONNECT_MAX_S  # RQ's retry cap while Redis is down (default 60 s)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = False
        self.parent_pid = os.getpid()  # read in the horse after the fork: the worker it must not outlive

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        if self.horse_pid:
            log.info(
                "worker %s: %s: the training checkpoints and goes back on the queue",
                self.name,
                signal.Signals(signum).name,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGTERM)
        super().request_stop(signum, frame)

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        preempt.install_handler(self.parent_pid)

    def unsubscribe(self) -> None:
        """RQ's, in an order that cannot hang: the command listener thread is told to stop before UNSUBSCRIBE goes
        out, so the reply that wakes it also ends it. In RQ's order (UNSUBSCRIBE, then stop) a thread that reads the
        reply first goes back to wait for a subscription for RQ's whole poll time, and redis-py's `stop()` waits for
        it without a bound: a worker SIGTERMed on a busy machine hung there. Also the way to end the listener of a
        worker whose teardown met a Redis outage: a failing UNSUBSCRIBE or close is let go (the thread is a daemon)."""
        thread, pubsub = self.pubsub_thread, self.pubsub
        self.pubsub_thread = self.pubsub = None  # once
        if thread is not None:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            thread.stop(timeout=0)  # only clears its flag
        if pubsub is not None:
            with contextlib.suppress(RedisError):
                pubsub.unsubscribe()
        if thread is not None:
            thread.join(timeout=1)
        if pubsub is not None:
            with contextlib.suppress(Exception):  # closing a connection to a dead server may fail any way it likes
                pubsub.close()

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except RedisError as exc:
            self.log.warning("Worker %s: heartbeat failed (%s); the training goes on", self.name, exc)


def _wait_for_redis(redis: Redis, stop: threading.Event) -> None:
    """Block until Redis answers PING, with backoff; return early when `stop` is set (SIGTERM/SIGINT)."""
    delay = RECONNECT_MIN_S
    while not stop.is_set():
        try:
            if redis.ping():
                return
        except RedisError:
            pass
        stop.wait(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)


def run_worker(settings: WorkerSettings | None = None, *, burst: bool = False, name: str | None = None) -> bool:
    """Serve training jobs until stopped (or, with burst, until the queue is empty). Returns whether any ran."""
    settings = settings or get_worker_settings()
    import models.training  # noqa: F401  (preload: CPU-only import, no CUDA initialization)

    if settings.store_url:
        S3Objects.preload()  # before the watchdog thread starts using the store, and before any fork

    redis = connection.connect(settings.redis_target, socket_timeout_s=None)  # RQ blocks on BLPOP
    queue = Queue(settings.queue_name, connection=redis)
    stop = threading.Event()
    watching = threading.Event()
    if not burst:
        run_in_thread(Watchdog.from_settings(settings), watching)
    worked = False
    try:
        while True:
            listened = dispatch.queues(queue)
            worker: GenserveWorker | None = None
            try:
                # RQ's constructor talks to Redis already (CLIENT SETNAME): a Redis that fails there (mid-failover,
                # say) is waited for like one that fails in the work loop, instead of ending the process.
                worker = GenserveWorker(listened, connection=redis, name=name)
                log.info(
                    "worker %s listening on queues %s at %s",
                    worker.name,
                    ", ".join(q.name for q in listened),
                    settings.redis_target,
                )
                worked = worker.work(burst=burst, logging_level=settings.log_level.upper()) or worked
            except RedisError as exc:  # start-up or teardown met a Redis outage
                log.warning("worker %s: Redis unavailable (%s)", worker.name if worker else name or "-", exc)
            except StopRequested:
                return worked
            if burst or (worker is not None and worker.stopping):
                return worked

            def on_signal(signum: int, frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            log.warning(
                "worker %s: the work loop ended (Redis unavailable?); restarting when Redis answers",
                worker.name if worker else name or "-",
            )
            if worker is not None:
                worker.unsubscribe()  # the teardown did not get that far (Redis failed first)
            stop.wait(RECONNECT_MIN_S)
            _wait_for_redis(redis, stop)
            if stop.is_set():
                return worked
            if worker is not None:
                with contextlib.suppress(RedisError):
                    worker.register_death()  # so that a worker of the same name can register again
    finally:
        watching.set()
