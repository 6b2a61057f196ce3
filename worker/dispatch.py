"""Putting a training on the RQ queue: the first time (the API), and again (the watchdog, a preempted work horse).

Every enqueue gets a fresh RQ job id, `{training_id}-{n}`, written to the training record as `job_id` *before* the
job is enqueued. The record's `job_id` is the fencing token: a job whose id is not the record's current one (the
duplicate left by a re-enqueue, a zombie horse of an earlier attempt) writes nothing to the record or the store.
Imports redis, rq and the store only: the API uses it without loading training code.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from rq import Queue

from app.settings import Settings
from models.store import ArtifactStore
from worker import events
from worker.status import TrainingStatus

log = logging.getLogger("genserve.worker")

JOB_FUNC = "worker.jobs.train"
RESULT_TTL_S = 7 * 24 * 3600


def job_id_for(training_id: str, n: int) -> str:
    return f"{training_id}-{n}"


def current_job_id(record: dict[str, Any]) -> str:
    """The RQ job that may work on this training now (records of earlier versions used the training id)."""
    return str(record.get("job_id") or record["id"])


def enqueue(queue: Queue, record: dict[str, Any], settings: Settings) -> None:
    """Enqueue the record's current job (raises RedisError when Redis is down)."""
    queue.enqueue(
        JOB_FUNC,
        record["id"],
        job_id=current_job_id(record),
        job_timeout=settings.job_timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=RESULT_TTL_S,
        description=f"train {record['config']['family']} on {record['request']['dataset']}",
    )


def requeue(
    store: ArtifactStore,
    queue: Queue,
    redis: Redis,
    settings: Settings,
    training_id: str,
    *,
    expect_job_id: str,
    reason: str,
    **changes: Any,
) -> dict[str, Any] | None:
    """Move a training onto a new job (status queued) and enqueue it; it resumes from its checkpoint.

    Compare-and-set on the record's job id: None, and nothing done, when the record has moved on meanwhile (ended,
    or re-queued by someone else). When Redis fails after the record was moved, the record says queued under a job
    that RQ lacks, and the watchdog enqueues it again once Redis answers.
    """
    record = store.get_training(training_id)
    n = int(record.get("enqueues", 1)) + 1
    new_job_id = job_id_for(training_id, n)
    updated = store.update_training_if(
        training_id,
        lambda r: current_job_id(r) == expect_job_id and not TrainingStatus(r["status"]).is_terminal(),
        status=TrainingStatus.queued.value,
        job_id=new_job_id,
        enqueues=n,
        **changes,
    )
    if updated is None:
        return None
    enqueue(queue, updated, settings)
    log.info("training %s: re-queued as job %s (%s)", training_id, new_job_id, reason)
    events.publish(redis, training_id, "status", {"status": TrainingStatus.queued.value, "reason": reason})
    return updated
