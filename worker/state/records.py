"""The training record: what the artifact store keeps of each training, typed, with one (de)serialiser.

The record is the source of truth of a training's state (Redis carries only the queue, live progress and liveness).
API replicas, workers and watchdogs all update it, so every change is a compare-and-set under the store's record
lock (`TrainingRecords.update_if`); `TrainingRecord.owned_by` is the one test of whether an RQ job may still write
to a record (the fence: see `worker.state.dispatch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from models.errors import NotFound
from models.progress import Progress
from models.store import ArtifactStore
from worker.state.status import TrainingStatus


class WorkerInfo(BaseModel):
    """The worker process that runs (or last ran) a training."""

    name: str
    pid: int
    host: str


class TrainingRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    status: TrainingStatus
    request: dict[str, Any] = Field(description="The request as accepted, with the seed it was given or drew.")
    config: dict[str, Any] = Field(description="The resolved config (`TrainConfig.to_dict`) the worker runs.")
    classes: list[str] | None = None
    progress: Progress = Field(default_factory=Progress)
    metrics: dict[str, float] = Field(default_factory=dict)
    model_id: str | None = None
    error: str | None = None
    attempts: int = 0  # times a worker started it
    job_id: str | None = None  # the RQ job that may work on it now (None in records of early versions)
    enqueues: int = 1  # times it was put on the queue; the next job id is `{id}-{enqueues + 1}`
    lost_workers: int = 0
    preemptions: int = 0
    resumed_from_step: int | None = None
    worker: WorkerInfo | None = None
    owner: str | None = None  # the API key (its name) that started it, for quotas
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    # Reported, never stored (the API's view of a queued training): 1 = taken next; the estimated wait.
    queue_position: int | None = Field(None, exclude=True)
    start_eta_seconds: float | None = Field(None, exclude=True)

    @property
    def current_job_id(self) -> str:
        """The RQ job that may work on this training now (records of early versions used the training id)."""
        return self.job_id or self.id

    @property
    def dataset(self) -> str:
        return str(self.request["dataset"])

    @property
    def family(self) -> str:
        return str(self.config["family"])

    def is_terminal(self) -> bool:
        return self.status.is_terminal()

    def owned_by(self, job_id: str) -> bool:
        """Whether RQ job `job_id` may still write to this record: it is the current job, and the training has not
        ended. A job that fails this test (a duplicate left by a re-enqueue, a zombie of an earlier attempt) writes
        nothing."""
        return self.current_job_id == job_id and not self.is_terminal()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainingRecords:
    """Typed access to the training records of an artifact store."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        # Parsed records by id, with the record's version when parsed (its file's mtime, size, inode; on S3, its ETag):
        # a list re-reads only the records that changed, so listing 10,000 trainings costs a directory scan and a
        # stat each (BENCHMARKS.md), or on S3 the bucket listing.
        self._parsed: dict[str, tuple[str, TrainingRecord]] = {}

    def get(self, training_id: str) -> TrainingRecord:
        return TrainingRecord.model_validate(self.store.get_training(training_id))

    def list(self) -> list[TrainingRecord]:
        """Every training, newest first."""
        records = []
        seen = set()
        for training_id, version in self.store.training_files():
            seen.add(training_id)
            held = self._parsed.get(training_id)
            if held is None or held[0] != version:
                try:
                    held = (version, self.get(training_id))
                except (NotFound, ValueError):  # deleted or half-visible meanwhile
                    continue
                self._parsed[training_id] = held
            records.append(held[1])
        for gone in self._parsed.keys() - seen:
            del self._parsed[gone]
        return sorted(records, key=lambda r: r.created_at, reverse=True)

    def put(self, record: TrainingRecord) -> None:
        self.store.put_training(record.to_json())

    def delete(self, training_id: str) -> None:
        self.store.delete_training(training_id)

    def update_if(
        self, training_id: str, check: Callable[[TrainingRecord], bool], /, **changes: Any
    ) -> TrainingRecord | None:
        """Apply `changes` when `check(record)` holds, atomically (a compare-and-set); None when it does not."""
        raw = self.store.update_training_if(
            training_id,
            lambda stored: check(TrainingRecord.model_validate(stored)),
            **{name: to_jsonable_python(value) for name, value in changes.items()},
        )
        return None if raw is None else TrainingRecord.model_validate(raw)

    def update_if_owner(self, training_id: str, owner: str, /, **changes: Any) -> TrainingRecord | None:
        """Apply `changes` when RQ job `owner` still owns the record (`TrainingRecord.owned_by`); else None."""
        return self.update_if(training_id, lambda record: record.owned_by(owner), **changes)
