"""`genserve worker`: an RQ worker on the training queue.

RQ forks a work horse per job; the parent never touches CUDA (it imports torch only to make job start-up fast, which
does not initialize CUDA), so a GPU job initializes CUDA inside its own horse.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker

from app.settings import Settings, get_settings, safe_url

log = logging.getLogger("genserve.worker")


def run_worker(settings: Settings | None = None, *, burst: bool = False, name: str | None = None) -> bool:
    """Serve training jobs until stopped (or, with burst, until the queue is empty)."""
    settings = settings or get_settings()
    import models.training  # noqa: F401  (preload: CPU-only import, no CUDA initialization)

    redis = Redis.from_url(settings.effective_redis_url)
    queue = Queue(settings.queue_name, connection=redis)
    worker = Worker([queue], connection=redis, name=name)
    log.info("worker %s listening on queue %s at %s", worker.name, queue.name, safe_url(settings.effective_redis_url))
    return worker.work(burst=burst, logging_level=settings.log_level.upper())
