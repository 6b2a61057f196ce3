"""Training requests: validate, record in the store, enqueue on RQ, report, cancel.

The API never trains: it enqueues `worker.jobs.train` by dotted path (worker/dispatch.py) and reads what workers
write. Each enqueue gets its own RQ job id, recorded in the training record as `job_id` (see worker/dispatch.py).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from app.schemas import SEED_MAX, TrainingRequest
from app.settings import Settings
from models.catalog import Catalog
from models.errors import Conflict, Invalid, NotFound
from models.mnist import ensure_mnist
from models.recipes import resolve_config
from models.store import ArtifactStore, new_id, utcnow
from worker import dispatch, events, lease
from worker.status import TrainingStatus, reconcile

EMPTY_PROGRESS: dict[str, Any] = {"step": 0, "total_steps": 0, "fraction": 0.0, "eta_seconds": None, "losses": {}}


@dataclass
class Trainings:
    store: ArtifactStore
    catalog: Catalog
    redis: Redis
    queue: Queue
    settings: Settings

    # --- create -----------------------------------------------------------------------------------------------------
    def _check_limits(self, req: TrainingRequest) -> None:
        s = self.settings
        for name, limit, setting in (
            ("steps", s.max_train_steps, "GENSERVE_MAX_TRAIN_STEPS"),
            ("batch_size", s.max_train_batch_size, "GENSERVE_MAX_TRAIN_BATCH_SIZE"),
            ("latent_dim", s.max_latent_dim, "GENSERVE_MAX_LATENT_DIM"),
            ("kl_warmup_steps", s.max_train_steps, "GENSERVE_MAX_TRAIN_STEPS"),
        ):
            value = getattr(req, name)
            if value is not None and value > limit:
                raise Invalid(f"{name} is {value}; the limit is {limit} ({setting})", field=("body", name), limit=limit)

    def _dataset_info(self, dataset_id: str) -> dict[str, Any]:
        try:
            info = self.catalog.info(dataset_id)
        except NotFound:
            raise Invalid(
                f"no dataset with id {dataset_id!r}; GET /v1/datasets lists them", field=("body", "dataset")
            ) from None
        if not info.get("available", True):
            # Built-in data that is not on disk yet: fetch it now (fails fast offline with a clear reason).
            ensure_mnist(self.settings.data_dir, self.settings.mnist_url, self.settings.download_timeout_s)
            info = self.catalog.info(dataset_id)
        return info

    def create(self, req: TrainingRequest) -> dict[str, Any]:
        self._check_limits(req)
        info = self._dataset_info(req.dataset)
        overrides = req.model_dump(exclude_none=True)
        if req.seed is None:
            overrides["seed"] = secrets.randbelow(SEED_MAX + 1)
        if overrides.get("batch_size", 0) > info["size"]:
            raise Invalid(
                f"batch_size {req.batch_size} exceeds the dataset's {info['size']} samples",
                field=("body", "batch_size"),
                limit=info["size"],
            )
        config = resolve_config(
            overrides,
            dataset_id=req.dataset,
            kind=info["kind"],
            sample_shape=tuple(info["shape"]),
            num_classes=len(info["classes"] or []),
        )
        training_id = new_id("tr")
        record = {
            "id": training_id,
            "status": TrainingStatus.queued.value,
            "request": {**req.model_dump(exclude_none=True), "seed": overrides["seed"]},
            "config": config.to_dict(),
            "classes": info["classes"],
            "progress": {**EMPTY_PROGRESS, "total_steps": config.steps},
            "metrics": {},
            "model_id": None,
            "error": None,
            "attempts": 0,
            "job_id": dispatch.job_id_for(training_id, 1),
            "enqueues": 1,
            "lost_workers": 0,
            "created_at": utcnow(),
            "started_at": None,
            "finished_at": None,
        }
        self.store.put_training(record)
        try:
            dispatch.enqueue(self.queue, record, self.settings)
            events.publish(self.redis, training_id, "status", {"status": TrainingStatus.queued.value})
        except RedisError:
            self.store.delete_training(training_id)  # nothing half-written: no record without a job
            raise
        return self.view(record)

    # --- read -------------------------------------------------------------------------------------------------------
    def _live_state(self, record: dict[str, Any]) -> tuple[str | None, bool]:
        """RQ's state of the record's current job (None: no such job) and whether a horse holds its lease."""
        job_id = dispatch.current_job_id(record)
        try:
            rq_status = Job.fetch(job_id, connection=self.redis).get_status(refresh=False).value
        except NoSuchJobError:
            rq_status = None
        holder = lease.holders(self.redis, [record["id"]])[record["id"]]
        return rq_status, holder is not None and holder.get("job_id") == job_id

    def view(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as the API shows it: status reconciled with RQ and the lease, live progress from Redis."""
        out = dict(record)
        if not TrainingStatus(record["status"]).is_terminal():
            try:
                verdict = reconcile(record["status"], *self._live_state(record))
                live = events.latest_progress(self.redis, record["id"])
            except RedisError:
                return out  # Redis down: report what the store knows
            out["status"] = verdict.status.value
            if live:
                out["progress"] = live
        return out

    def get(self, training_id: str) -> dict[str, Any]:
        return self.view(self.store.get_training(training_id))

    def list(self) -> list[dict[str, Any]]:
        return [self.view(r) for r in self.store.list_trainings()]

    def uses_dataset(self, dataset_id: str) -> bool:
        return any(
            r["request"]["dataset"] == dataset_id and not TrainingStatus(r["status"]).is_terminal() for r in self.list()
        )

    # --- cancel -----------------------------------------------------------------------------------------------------
    def cancel(self, training_id: str) -> dict[str, Any]:
        current = self.get(training_id)
        status = TrainingStatus(current["status"])
        if status.is_terminal():
            raise Conflict(f"training {training_id} has already ended ({status.value})")
        events.request_cancel(self.redis, training_id)  # a running job sees this within a second
        if status is TrainingStatus.queued:
            job_id = dispatch.current_job_id(current)
            try:
                job = Job.fetch(job_id, connection=self.redis)
                if job.get_status() == "queued":
                    job.cancel()
                    record = self.store.update_training_if(
                        training_id,
                        lambda r: dispatch.current_job_id(r) == job_id and r["status"] == TrainingStatus.queued.value,
                        status=TrainingStatus.canceled.value,
                        finished_at=utcnow(),
                    )
                    if record is not None:
                        self.store.delete_checkpoint(training_id)  # of an earlier, preempted attempt
                        events.publish(self.redis, training_id, "status", {"status": TrainingStatus.canceled.value})
                        return self.view(record)
            except (NoSuchJobError, InvalidJobOperation):
                pass  # picked up by a worker, which honours the flag (or lost: the watchdog honours it)
        return self.get(training_id)
