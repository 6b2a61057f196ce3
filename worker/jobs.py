"""RQ entry points, enqueued by dotted path (`worker.jobs.train`). Thin glue: read the record, run
`models.training.train`, report progress to Redis, store the model. Runs inside the forked work horse, so the
device (and CUDA) is initialized here, never in the worker's parent process.

Faults: while it trains, the job holds the training's liveness lease (worker/state/lease.py) so the watchdog knows
it is alive; it writes the record, checkpoints and the model only while its RQ job owns the record (the fence, see
worker/state/dispatch.py), so a zombie of an earlier attempt cannot overwrite a newer one; on the worker's SIGTERM it
checkpoints and puts the training back on the queue (worker/preempt.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from typing import Any

import torch
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, get_current_job

from models import previews
from models.config import TrainConfig
from models.errors import GenserveError, Invalid, NotFound, TrainingDiverged
from models.history import History
from models.manifest import ModelManifest
from models.nets import GenerativeModel
from models.plots import PointsFrame
from models.progress import Progress
from models.registry import ModelRegistry
from models.store import ArtifactStore, utcnow
from models.training import TrainResult
from models.training import train as run_training
from worker import preempt
from worker.state import connection, dispatch, events, webhooks
from worker.state.lease import LeaseKeeper
from worker.state.records import TrainingRecord, TrainingRecords, WorkerInfo
from worker.state.settings import WorkerSettings, get_worker_settings
from worker.state.status import TrainingStatus

log = logging.getLogger("genserve.worker")

CANCEL_POLL_INTERVAL_S = 0.5
FENCE_POLL_INTERVAL_S = 2.0  # how often a running job checks that it still owns the record
STATUS_EVENT_FIELDS = ("model_id", "error", "metrics")  # what a final status event carries


class Fence:
    """Writes to one training's record on behalf of one RQ job, only while that job owns the record."""

    def __init__(self, store: ArtifactStore, training_id: str, job_id: str) -> None:
        self.store = store
        self.records = TrainingRecords(store)
        self.training_id = training_id
        self.job_id = job_id

    def holds(self) -> bool:
        try:
            return self.records.get(self.training_id).owned_by(self.job_id)
        except GenserveError:  # deleted
            return False

    def update(self, **changes: Any) -> TrainingRecord | None:
        """Apply `changes` if this job still owns the record; None (nothing written) when it does not."""
        try:
            return self.records.update_if_owner(self.training_id, self.job_id, **changes)
        except GenserveError:
            return None


class StoreCheckpointer:
    """Checkpoints of one training in the artifact store (safetensors with JSON meta, one atomic file), and with
    each the training's history so far (history.json), so that its curves outlive Redis and a killed worker."""

    def __init__(
        self, store: ArtifactStore, fence: Fence, interval_s: float, reporter: TrainingReporter, total_steps: int
    ) -> None:
        self.store = store
        self.fence = fence
        self.training_id = fence.training_id
        self.interval_s = interval_s
        self.reporter = reporter
        self.total_steps = total_steps
        self.resumed_from_step = 0

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        loaded = self.store.load_checkpoint(self.training_id)
        if loaded is not None:
            self.resumed_from_step = int(loaded[1].get("step", 0))
            log.info("training %s: resuming from the checkpoint at step %d", self.training_id, self.resumed_from_step)
            self.fence.update(resumed_from_step=self.resumed_from_step)
            self.reporter.status(TrainingStatus.running, resumed_from_step=self.resumed_from_step)
        return loaded

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        # Checked just before writing: a zombie of an earlier attempt stops overwriting the current one's
        # checkpoints (a race inside this window leaves a valid checkpoint of the same config, never a torn one).
        if self.fence.holds():
            self.store.save_checkpoint(self.training_id, tensors, meta)
            self.store.put_history(self.training_id, History.from_dict(meta.get("history")).series(self.total_steps))


class Previewer:
    """Preview pictures of one training into the store, each announced on its event stream (`preview` events)."""

    def __init__(
        self, store: ArtifactStore, fence: Fence, reporter: TrainingReporter, frame: PointsFrame | None
    ) -> None:
        self.store = store
        self.fence = fence
        self.reporter = reporter
        self.frame = frame

    def __call__(self, step: int, model: GenerativeModel) -> None:
        png = previews.preview_png(model, step, self.frame)
        if self.fence.holds():
            self.store.put_preview(self.fence.training_id, step, png)
            announced = {"step": step, "url": f"/v1/trainings/{self.fence.training_id}/previews/{step}"}
            self.reporter.event(events.PREVIEW, announced)
            if self.reporter.record is not None:
                self.reporter.webhook(self.reporter.record, "preview", announced)


class TrainingReporter:
    """Progress and stop requests through Redis; a Redis outage never stops a training."""

    def __init__(self, redis: Redis, fence: Fence) -> None:
        self.redis = redis
        self.fence = fence
        self.training_id = fence.training_id
        self.last: Progress | None = None
        self._cancel_checked_at = 0.0
        self._fence_checked_at = time.monotonic()
        self.stop_reason: str | None = None  # "canceled", "preempted" (worker SIGTERM) or "superseded"
        self._redis_failing = False
        self.record: TrainingRecord | None = None  # as it started: the body of its webhook deliveries
        self._webhook_progress_at = -math.inf

    def progress(self, p: Progress) -> None:
        self.last = p
        self._publish(events.publish_progress, p)
        now = time.monotonic()
        if self.record is not None and now - self._webhook_progress_at >= webhooks.PROGRESS_EVERY_S:
            self._webhook_progress_at = now
            self.webhook(self.record.model_copy(update={"progress": p}), "progress")

    def webhook(self, record: TrainingRecord, event: str, extra: dict[str, Any] | None = None) -> None:
        """Schedule a webhook delivery of `event` (when the training asked for it); sent by the API processes."""
        self._guarded(webhooks.enqueue, self.redis, record, event, extra)

    def status(self, status: TrainingStatus, **data: Any) -> None:
        self._publish(events.publish_status, status, **data)

    def event(self, name: str, data: dict[str, Any]) -> None:
        self._publish(events.publish, name, data)

    def _publish(self, publish: Any, *args: Any, **kwargs: Any) -> None:
        self._guarded(publish, self.redis, self.training_id, *args, **kwargs)

    def _guarded(self, write: Any, *args: Any, **kwargs: Any) -> None:
        """A write to Redis that, failing, is logged once per outage and never stops the training."""
        try:
            write(*args, **kwargs)
            self._redis_failing = False
        except RedisError as exc:
            if not self._redis_failing:  # once per outage, not once per progress report
                log.warning("training %s: cannot publish events (Redis down?): %s", self.training_id, exc)
            self._redis_failing = True

    def should_stop(self) -> bool:
        if self.stop_reason is not None:
            return True
        now = time.monotonic()
        if preempt.requested():
            self.stop_reason = "preempted"
        elif now - self._cancel_checked_at >= CANCEL_POLL_INTERVAL_S:
            self._cancel_checked_at = now
            try:
                if events.cancel_requested(self.redis, self.training_id):
                    self.stop_reason = "canceled"
            except RedisError:
                pass  # reported by _publish(); the training goes on
        if self.stop_reason is None and now - self._fence_checked_at >= FENCE_POLL_INTERVAL_S:
            self._fence_checked_at = now
            if not self.fence.holds():
                self.stop_reason = "superseded"
        return self.stop_reason is not None

    def stop_requested(self) -> bool:
        """`should_stop`, asking Redis now rather than at the next poll (before a model is published)."""
        self._cancel_checked_at = 0.0
        return self.should_stop()

    def final_changes(self) -> dict[str, Any]:
        """The last progress, for the record of a training that ends (nothing when none was reported)."""
        return {} if self.last is None else {"progress": self.last}


def _finish(fence: Fence, reporter: TrainingReporter, status: TrainingStatus, **changes: Any) -> dict[str, Any]:
    record = fence.update(status=status, finished_at=utcnow(), **changes)
    if record is None:
        log.warning("training %s: superseded by another job; not recording %s", fence.training_id, status.value)
        return {"status": "superseded"}
    fence.store.delete_checkpoint(fence.training_id)
    reporter.status(status, **{k: v for k, v in changes.items() if k in STATUS_EVENT_FIELDS})
    reporter.webhook(record, "completed")
    return {"status": record.status.value, "model_id": record.model_id}


def nonfinite_tensor(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor with a NaN or an infinity, or None."""
    return next((k for k, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())), None)


def model_id_for(training_id: str) -> str:
    """A training's model id: one per training, so that a retry finds what an attempt that died published."""
    return "mdl_" + training_id.split("_", 1)[1]


def store_model(store: ArtifactStore, record: TrainingRecord, result: TrainResult) -> str:
    """Publish the trained model; refuses (TrainingDiverged) weights that are not finite.

    Idempotent per training: a worker that dies after publishing but before the training is marked succeeded is
    retried, and the retry returns the model already published instead of a second one that nothing points to;
    weights left by an attempt that died before its manifest (never visible) are replaced."""
    tensors = result.model.state_dict()
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise TrainingDiverged(f"training diverged: the final weights are not finite ({bad!r}); no model was stored")
    model_id = model_id_for(record.id)
    with contextlib.suppress(NotFound):
        return store.get_model(model_id).id
    store.drop_unpublished_weights(model_id)
    manifest = ModelManifest(
        id=model_id,
        dataset=record.dataset,
        classes=record.classes if result.spec.num_classes > 0 else None,
        training_id=record.id,
        metrics=result.metrics,
        created_at=utcnow(),
        spec=result.spec,
        config=record.config,
        parent_model_id=record.request.get("init_from"),
        tags=record.request.get("tags") or {},
    )
    name = record.request.get("model_name")
    if name:  # the next version of the name, claimed by compare-and-swap on the registry (models/registry.py)
        return ModelRegistry(store).publish(manifest, tensors, name).id
    store.put_model(manifest, tensors)
    return manifest.id


def _init_weights(store: ArtifactStore, record: TrainingRecord) -> dict[str, torch.Tensor] | None:
    """The weights of the model the training starts from (`init_from`), read as safetensors; None without one."""
    parent = record.request.get("init_from")
    if parent is None:
        return None
    try:
        return store.load_model_tensors(parent)
    except NotFound:
        raise Invalid(f"the model to start from ({parent}) was deleted before the training began") from None


def train(training_id: str, settings: WorkerSettings | None = None) -> dict[str, Any]:
    """Run one training to its end (or hand it back on SIGTERM) and record the outcome in the store."""
    settings = settings or get_worker_settings()
    store = settings.artifact_store()
    record = TrainingRecords(store).get(training_id)
    job = get_current_job()
    job_id = job.id if job is not None else record.current_job_id
    if record.is_terminal():
        return {"status": record.status.value, "skipped": True}
    if not record.owned_by(job_id):
        log.info(
            "training %s: job %s is stale (the current one is %s); skipped", training_id, job_id, record.current_job_id
        )
        return {"status": record.status.value, "skipped": True}
    redis = connection.connect(settings.redis_target)
    worker_name = os.environ.get("RQ_WORKER_ID", "direct")
    keeper = LeaseKeeper(redis, training_id, job_id, worker_name, settings.lease_ttl_s)
    keeper.acquire()  # before the record says running: a running record without a lease is a lost one
    try:
        return _run(store, redis, settings, Fence(store, training_id, job_id), record, worker_name)
    finally:
        keeper.release()
        redis.close()


def _run(
    store: ArtifactStore,
    redis: Redis,
    settings: WorkerSettings,
    fence: Fence,
    record: TrainingRecord,
    worker_name: str,
) -> dict[str, Any]:
    training_id = fence.training_id
    reporter = TrainingReporter(redis, fence)
    if reporter.should_stop() and reporter.stop_reason == "canceled":
        return _finish(fence, reporter, TrainingStatus.canceled)
    started = fence.update(
        status=TrainingStatus.running,
        started_at=record.started_at or utcnow(),
        attempts=record.attempts + 1,
        error=None,
        worker=WorkerInfo(name=worker_name, pid=os.getpid(), host=os.uname().nodename),
    )
    if started is None:
        return {"status": "superseded"}
    record = started
    reporter.record = record
    reporter.status(TrainingStatus.running, attempt=record.attempts)
    if record.attempts == 1:  # once, not again when it resumes on another worker
        reporter.webhook(record, "started")
    log.info(
        "training %s: started (%s on %s, attempt %d, job %s)",
        training_id,
        record.family,
        record.dataset,
        record.attempts,
        fence.job_id,
    )
    config = TrainConfig.from_dict(record.config)
    checkpointer = StoreCheckpointer(store, fence, settings.checkpoint_interval_s, reporter, config.steps)
    try:
        device = settings.torch_device()
        data = settings.catalog(store).load(record.dataset)
        frame = PointsFrame.of(data.train.x) if data.train.kind == "points" and config.preview_every else None
        init = _init_weights(store, record)
        result = run_training(
            config,
            data,
            device=device,
            on_progress=reporter.progress,
            progress_interval_s=settings.progress_interval_s,
            should_stop=reporter.should_stop,
            checkpointer=checkpointer,
            classifier_cache=store,
            on_preview=Previewer(store, fence, reporter, frame),
            init=init,
        )
    except GenserveError as exc:
        log.warning("training %s: failed: %s", training_id, exc.detail)
        return _finish(fence, reporter, TrainingStatus.failed, error=exc.detail, **reporter.final_changes())
    except Exception as exc:
        log.exception("training %s: crashed", training_id)
        _finish(
            fence,
            reporter,
            TrainingStatus.failed,
            error=f"internal error: {type(exc).__name__}: {exc}",
            **reporter.final_changes(),
        )
        raise
    if fence.holds():
        store.put_history(training_id, result.history)
    if result.canceled or reporter.stop_requested():  # a cancel that came after the last poll still counts
        return _stopped(store, redis, settings, fence, reporter, result)
    if not fence.holds():
        log.warning("training %s: superseded by another job; its model is not stored", training_id)
        return {"status": "superseded"}
    try:
        model_id = store_model(store, record, result)
    except GenserveError as exc:
        log.warning("training %s: failed: %s", training_id, exc.detail)
        return _finish(fence, reporter, TrainingStatus.failed, error=exc.detail, **reporter.final_changes())
    log.info("training %s: succeeded, model %s", training_id, model_id)
    outcome = _finish(
        fence,
        reporter,
        TrainingStatus.succeeded,
        model_id=model_id,
        metrics=result.metrics,
        **reporter.final_changes(),
    )
    try:
        events.publish_model_event(redis, "created", model_id)
    except RedisError as exc:
        log.warning("training %s: cannot announce model %s: %s", training_id, model_id, exc)
    return outcome


def _stopped(
    store: ArtifactStore,
    redis: Redis,
    settings: WorkerSettings,
    fence: Fence,
    reporter: TrainingReporter,
    result: TrainResult,
) -> dict[str, Any]:
    """The loop stopped early (having checkpointed): canceled, handed back on SIGTERM, or superseded."""
    training_id = fence.training_id
    if reporter.stop_reason == "superseded":
        log.warning("training %s: superseded by another job at step %d; stopping", training_id, result.steps)
        return {"status": "superseded"}
    if reporter.stop_reason == "preempted":
        records = TrainingRecords(store)
        record = records.get(training_id)
        reason = f"worker shutting down; re-queued at step {result.steps} to resume from its checkpoint"
        try:
            requeued = dispatch.requeue(
                records,
                Queue(settings.queue_name, connection=redis),
                redis,
                settings,
                training_id,
                expect_job_id=fence.job_id,
                reason=reason,
                preemptions=record.preemptions + 1,
                progress=reporter.last or record.progress,
            )
        except RedisError as exc:  # the record already says queued: the watchdog enqueues it when Redis answers
            log.warning("training %s: re-queued in the store, but Redis is down (%s)", training_id, exc)
            return {"status": TrainingStatus.queued.value, "preempted": True}
        log.info("training %s: %s", training_id, reason)
        return {"status": TrainingStatus.queued.value if requeued else "superseded", "preempted": True}
    log.info("training %s: canceled at step %d", training_id, result.steps)
    return _finish(fence, reporter, TrainingStatus.canceled, **reporter.final_changes())
