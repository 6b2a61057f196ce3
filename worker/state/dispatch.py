"""Putting a training on the RQ queue: the first time (the API), and again (the watchdog, a preempted work horse).

Every enqueue gets a fresh RQ job id, `{training_id}-{n}`, written to the training record as `job_id` *before* the
job is enqueued. The record's `job_id` is the fencing token: a job that does not own the record
(`TrainingRecord.owned_by`: the duplicate left by a re-enqueue, a zombie horse of an earlier attempt) writes nothing
to the record or the store. Jobs are enqueued by dotted path, so the API never imports the worker's runtime.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from rq import Queue

from worker.state import events
from worker.state.records import TrainingRecord, TrainingRecords
from worker.state.settings import WorkerSettings
from worker.state.status import TrainingStatus

log = logging.getLogger("genserve.worker")

JOB_FUNC = "worker.jobs.train"
RESULT_TTL_S = 7 * 24 * 3600
PRIORITIES = ("high", "normal", "low")  # the order in which workers take the queues
DEFAULT_PRIORITY = "normal"


def job_id_for(training_id: str, n: int) -> str:
    return f"{training_id}-{n}"


def priority_of(record: TrainingRecord) -> str:
    return str(record.request.get("priority", DEFAULT_PRIORITY))


def queue_for(queue: Queue, priority: str) -> Queue:
    """The RQ queue of one priority: `queue` (the configured name) itself for normal, `<name>-high` and `<name>-low`
    beside it, so that a deployment of an earlier version keeps its queued jobs."""
    return queue if priority == DEFAULT_PRIORITY else Queue(f"{queue.name}-{priority}", connection=queue.connection)


def queues(queue: Queue) -> list[Queue]:
    """Every priority's queue, highest first: what a worker listens to (RQ takes from the first non-empty one)."""
    return [queue_for(queue, p) for p in PRIORITIES]


def waiting(queue: Queue) -> list[str]:
    """The job ids waiting on the queues, in the order workers will take them (one round trip)."""
    pipe = queue.connection.pipeline(transaction=False)
    for q in queues(queue):
        pipe.lrange(q.key, 0, -1)
    return [raw.decode() if isinstance(raw, bytes) else raw for ids in pipe.execute() for raw in ids]


def enqueue(queue: Queue, record: TrainingRecord, settings: WorkerSettings) -> None:
    """Enqueue the record's current job on its priority's queue (raises RedisError when Redis is down)."""
    queue_for(queue, priority_of(record)).enqueue(
        JOB_FUNC,
        record.id,
        job_id=record.current_job_id,
        job_timeout=settings.job_timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=RESULT_TTL_S,
        description=f"train {record.family} on {record.dataset}",
    )


def requeue(
    records: TrainingRecords,
    queue: Queue,
    redis: Redis,
    settings: WorkerSettings,
    training_id: str,
    *,
    expect_job_id: str,
    reason: str,
    **changes: Any,
) -> TrainingRecord | None:
    """Move a training onto a new job (status queued) and enqueue it; it resumes from its checkpoint.

    Compare-and-set on the record's job id: None, and nothing done, when the record has moved on meanwhile (ended,
    or re-queued by someone else). When Redis fails after the record was moved, the record says queued under a job
    that RQ lacks, and the watchdog enqueues it again once Redis answers.
    """
    n = records.get(training_id).enqueues + 1
    new_job_id = job_id_for(training_id, n)
    updated = records.update_if_owner(
        training_id, expect_job_id, status=TrainingStatus.queued, job_id=new_job_id, enqueues=n, **changes
    )
    if updated is None:
        return None
    enqueue(queue, updated, settings)
    log.info("training %s: re-queued as job %s (%s)", training_id, new_job_id, reason)
    events.publish_status(redis, training_id, TrainingStatus.queued, reason=reason)
    return updated
