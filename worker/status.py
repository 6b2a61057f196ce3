"""The one status enum of trainings, and the one place that maps RQ's job states onto it.

The artifact store's training record holds the status that the API and the worker write; RQ's job state is only
consulted to notice what the record cannot know by itself (a work horse that died without writing anything).
"""

from __future__ import annotations

from enum import StrEnum


class TrainingStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    def is_terminal(self) -> bool:
        return self in (TrainingStatus.succeeded, TrainingStatus.failed, TrainingStatus.canceled)


# RQ job states (rq.job.JobStatus values) that mean "the job is over, whatever it managed to write".
RQ_ENDED = {"finished", "failed", "stopped", "canceled"}


def reconcile(recorded: str, rq_status: str | None) -> tuple[TrainingStatus, str | None]:
    """The status to report given the record's and RQ's view; the second item explains a correction.

    A record still `queued`/`running` whose RQ job has ended (or vanished while running) lost its worker.
    """
    status = TrainingStatus(recorded)
    if status.is_terminal():
        return status, None
    if rq_status in RQ_ENDED:
        return TrainingStatus.failed, f"the worker stopped without finishing the training (job {rq_status})"
    return status, None
