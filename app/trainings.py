"""Training requests: validate, record in the store, enqueue on RQ, report, cancel.

The API never trains: it enqueues `worker.jobs.train` by dotted path (worker/state/dispatch.py) and reads what
workers write, through the worker's state subpackage. Each enqueue gets its own RQ job id, recorded in the training
record as `job_id` (the fence: see worker/state/dispatch.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from app.problems import located_in
from app.schemas import TrainingRequest
from app.settings import Settings
from models.data.catalog import Catalog
from models.errors import Conflict, Invalid, NotFound
from models.progress import Progress
from models.recipes import resolve_config
from models.seeds import draw_seed
from models.store import new_id, utcnow
from worker.state import dispatch, events
from worker.state.records import TrainingRecord, TrainingRecords
from worker.state.status import TrainingStatus, assess


@dataclass
class Trainings:
    records: TrainingRecords
    catalog: Catalog
    redis: Redis
    queue: Queue
    settings: Settings

    # --- create -----------------------------------------------------------------------------------------------------
    def _check_limits(self, req: TrainingRequest) -> None:
        s = self.settings
        for name, setting in (
            ("steps", "max_train_steps"),
            ("batch_size", "max_train_batch_size"),
            ("latent_dim", "max_latent_dim"),
            ("kl_warmup_steps", "max_train_steps"),
        ):
            value, limit = getattr(req, name), getattr(s, setting)
            if value is not None and value > limit:
                raise Invalid(
                    f"{name} is {value}; the limit is {limit} ({s.env_name(setting)})", field=(name,), limit=limit
                )

    def create(self, req: TrainingRequest) -> TrainingRecord:
        with located_in("body"):
            self._check_limits(req)
            try:
                info = self.catalog.fetch(req.dataset)
            except NotFound:
                raise Invalid(
                    f"no dataset with id {req.dataset!r}; GET /v1/datasets lists them", field=("dataset",)
                ) from None
            request = {**req.model_dump(exclude_none=True), "seed": req.seed if req.seed is not None else draw_seed()}
            config = resolve_config(
                request,
                dataset_id=req.dataset,
                kind=info.kind,
                sample_shape=tuple(info.shape),
                num_classes=info.num_classes,
                size=info.size,
            )
        training_id = new_id("tr")
        record = TrainingRecord(
            id=training_id,
            status=TrainingStatus.queued,
            request=request,
            config=config.to_dict(),
            classes=info.classes,
            progress=Progress(total_steps=config.steps),
            job_id=dispatch.job_id_for(training_id, 1),
            enqueues=1,
            created_at=utcnow(),
        )
        self.records.put(record)
        try:
            dispatch.enqueue(self.queue, record, self.settings)
            events.publish_status(self.redis, training_id, TrainingStatus.queued)
        except RedisError:
            self.records.delete(training_id)  # nothing half-written: no record without a job
            raise
        return self.view(record)

    # --- read -------------------------------------------------------------------------------------------------------
    def view(self, record: TrainingRecord) -> TrainingRecord:
        """The record as the API shows it: status reconciled with RQ and the lease, live progress from Redis."""
        if record.is_terminal():
            return record
        try:
            verdict = assess(self.redis, [record])[record.id]
            live = events.latest_progress(self.redis, record.id)
        except RedisError:
            return record  # Redis down: report what the store knows
        return record.model_copy(update={"status": verdict.status, "progress": live or record.progress})

    def get(self, training_id: str) -> TrainingRecord:
        return self.view(self.records.get(training_id))

    def list(self) -> list[TrainingRecord]:
        return [self.view(r) for r in self.records.list()]

    def uses_dataset(self, dataset_id: str) -> bool:
        return any(r.dataset == dataset_id and not r.is_terminal() for r in self.list())

    # --- cancel -----------------------------------------------------------------------------------------------------
    def cancel(self, training_id: str) -> TrainingRecord:
        current = self.get(training_id)
        if current.is_terminal():
            raise Conflict(f"training {training_id} has already ended ({current.status.value})")
        events.request_cancel(self.redis, training_id)  # a running job sees this within a second
        if current.status is TrainingStatus.queued:
            job_id = current.current_job_id
            try:
                job = Job.fetch(job_id, connection=self.redis)
                if job.get_status() == "queued":
                    job.cancel()
                    record = self.records.update_if(
                        training_id,
                        lambda r: r.owned_by(job_id) and r.status is TrainingStatus.queued,
                        status=TrainingStatus.canceled,
                        finished_at=utcnow(),
                    )
                    if record is not None:
                        self.records.store.delete_checkpoint(training_id)  # of an earlier, preempted attempt
                        events.publish_status(self.redis, training_id, TrainingStatus.canceled)
                        return self.view(record)
            except (NoSuchJobError, InvalidJobOperation):
                pass  # picked up by a worker, which honours the flag (or lost: the watchdog honours it)
        return self.get(training_id)
