"""The one status enum of trainings, and the one place that maps RQ's job states onto it.

The artifact store's training record holds the status that the API and the worker write; Redis is consulted to
notice what the record cannot know by itself: whether a work horse still holds the training's liveness lease, and
whether RQ still has the job at all (a Redis restarted without persistence has forgotten every job).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq.job import Job

from worker.state import keys, lease

if TYPE_CHECKING:
    from worker.state.records import TrainingRecord


class TrainingStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"
    # Reported, never stored: a cancel was asked for and the training has not ended yet (a running one stops at its
    # next step, or after the end-of-training metrics in progress; the record then says `canceled`).
    canceling = "canceling"

    def is_terminal(self) -> bool:
        return self in (TrainingStatus.succeeded, TrainingStatus.failed, TrainingStatus.canceled)


class Liveness(StrEnum):
    """What the watchdog makes of a training: whether anyone is, or will be, working on it."""

    ended = "ended"  # the record is terminal: nothing to watch
    alive = "alive"  # a work horse holds the lease for the record's current job
    waiting = "waiting"  # RQ holds the job in a queue (or deferred/scheduled): a worker will take it
    lost = "lost"  # a worker took the job (RQ: started or ended) and nobody holds the lease: killed or crashed
    missing = "missing"  # RQ has no such job: Redis lost its data (a restart without persistence)

    def needs_action(self) -> bool:
        return self in (Liveness.lost, Liveness.missing)


# RQ job states (rq.job.JobStatus values).
RQ_WAITING = {"queued", "deferred", "scheduled", "created", "rate_limited", "ready_to_enqueue"}
RQ_ENDED = {"finished", "failed", "stopped", "canceled"}


@dataclass(frozen=True)
class Verdict:
    status: TrainingStatus  # what to report now
    liveness: Liveness  # what the watchdog should do about it


def reconcile(recorded: str, rq_status: str | None, leased: bool, cancel_requested: bool = False) -> Verdict:
    """The status to report and the training's liveness, from the record, RQ's job state (None: no such job),
    whether a work horse holds the lease for the record's current job, and whether a cancel was asked for (then the
    report is `canceling` until the record ends; the liveness, which the watchdog acts on, is unchanged).

    A lost or missing training keeps its recorded status: the watchdog re-queues it (or, after
    `max_attempts` lost workers, fails it with the reason), so nothing is reported as failed before it is.
    """
    status = TrainingStatus(recorded)
    if status.is_terminal():
        return Verdict(status, Liveness.ended)
    verdict = _reconcile_live(status, rq_status, leased)
    return Verdict(TrainingStatus.canceling, verdict.liveness) if cancel_requested else verdict


def _reconcile_live(status: TrainingStatus, rq_status: str | None, leased: bool) -> Verdict:
    if leased:
        return Verdict(TrainingStatus.running, Liveness.alive)
    if rq_status is None:
        return Verdict(status, Liveness.missing)
    if rq_status in RQ_WAITING:
        return Verdict(status, Liveness.waiting)
    # "started" without a lease (the horse died, or has not taken the lease yet: the watchdog waits a grace period
    # before acting), or ended while the record says otherwise (the horse died without writing its outcome).
    return Verdict(status, Liveness.lost)


def assess(redis: Redis, records: Sequence[TrainingRecord]) -> dict[str, Verdict]:
    """Each record's verdict, from its RQ job's state, its cancel flag and its lease: two round trips, however many
    records."""
    pipe = redis.pipeline(transaction=False)
    for record in records:
        pipe.hget(Job.key_for(record.current_job_id), "status")
        pipe.exists(keys.cancel(record.id))
    replies: list[Any] = pipe.execute()
    rq_states, cancels = replies[0::2], replies[1::2]
    holders = lease.holders(redis, [r.id for r in records])
    verdicts = {}
    for record, raw, canceling in zip(records, rq_states, cancels, strict=True):
        rq_status = raw.decode() if isinstance(raw, bytes) else raw
        holder = holders[record.id]
        leased = holder is not None and holder.get("job_id") == record.current_job_id
        verdicts[record.id] = reconcile(record.status, rq_status, leased, bool(canceling))
    return verdicts
