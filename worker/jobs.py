"""RQ entry points, enqueued by dotted path (`worker.jobs.train`). Thin glue: read the record, run
`models.training.train`, report progress to Redis, store the model. Runs inside the forked work horse, so the
device (and CUDA) is initialized here, never in the worker's parent process.

Faults: while it trains, the job holds the training's liveness lease (worker/lease.py) so the watchdog knows it is
alive; it writes the record, checkpoints and the model only while its RQ job is the record's current one (the fence,
see worker/dispatch.py), so a zombie of an earlier attempt cannot overwrite a newer one; on the worker's SIGTERM it
checkpoints and puts the training back on the queue (worker/preempt.py).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, get_current_job

from app.settings import Settings, get_settings
from models.catalog import Catalog
from models.devices import resolve_device
from models.errors import GenserveError, TrainingDiverged
from models.recipes import TrainConfig
from models.store import ArtifactStore, new_id, utcnow
from models.training import Progress, TrainResult
from models.training import train as run_training
from worker import dispatch, events, preempt
from worker.lease import LeaseKeeper
from worker.status import TrainingStatus

log = logging.getLogger("genserve.worker")

CANCEL_POLL_INTERVAL_S = 0.5
FENCE_POLL_INTERVAL_S = 2.0  # how often a running job checks that it is still the record's current job
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0


class Fence:
    """Writes to one training's record on behalf of one RQ job, only while that job is the record's current one."""

    def __init__(self, store: ArtifactStore, training_id: str, job_id: str) -> None:
        self.store = store
        self.training_id = training_id
        self.job_id = job_id

    def _ours(self, record: dict[str, Any]) -> bool:
        return dispatch.current_job_id(record) == self.job_id and not TrainingStatus(record["status"]).is_terminal()

    def holds(self) -> bool:
        try:
            return self._ours(self.store.get_training(self.training_id))
        except GenserveError:  # deleted
            return False

    def update(self, **changes: Any) -> dict[str, Any] | None:
        """Apply `changes` if this job still owns the record; None (nothing written) when it does not."""
        try:
            return self.store.update_training_if(self.training_id, self._ours, **changes)
        except GenserveError:
            return None


class StoreCheckpointer:
    """Checkpoints of one training in the artifact store (safetensors with JSON meta, one atomic file)."""

    def __init__(self, store: ArtifactStore, fence: Fence, interval_s: float, reporter: TrainingReporter) -> None:
        self.store = store
        self.fence = fence
        self.training_id = fence.training_id
        self.interval_s = interval_s
        self.reporter = reporter
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


class TrainingReporter:
    """Progress and stop requests through Redis; a Redis outage never stops a training."""

    def __init__(self, redis: Redis, fence: Fence) -> None:
        self.redis = redis
        self.fence = fence
        self.training_id = fence.training_id
        self.last: dict[str, Any] = {}
        self._cancel_checked_at = 0.0
        self._fence_checked_at = time.monotonic()
        self.stop_reason: str | None = None  # "canceled", "preempted" (worker SIGTERM) or "superseded"
        self._redis_failing = False

    def progress(self, p: Progress) -> None:
        self.last = {
            "step": p.step,
            "total_steps": p.total_steps,
            "fraction": p.step / p.total_steps if p.total_steps else 0.0,
            "eta_seconds": None if p.eta_s is None else round(p.eta_s, 1),
            "losses": {k: round(v, 6) for k, v in p.losses.items()},
            "phase": p.phase,
            "detail": p.detail,
        }
        self.event("progress", self.last)

    def status(self, status: TrainingStatus, **data: Any) -> None:
        self.event("status", {"status": status.value, **data})

    def event(self, name: str, data: dict[str, Any]) -> None:
        try:
            events.publish(self.redis, self.training_id, name, data)
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
                pass  # reported by event(); the training goes on
        if self.stop_reason is None and now - self._fence_checked_at >= FENCE_POLL_INTERVAL_S:
            self._fence_checked_at = now
            if not self.fence.holds():
                self.stop_reason = "superseded"
        return self.stop_reason is not None


def _finish(fence: Fence, reporter: TrainingReporter, status: TrainingStatus, **changes: Any) -> dict[str, Any]:
    record = fence.update(status=status.value, finished_at=utcnow(), **changes)
    if record is None:
        log.warning("training %s: superseded by another job; not recording %s", fence.training_id, status.value)
        return {"status": "superseded"}
    fence.store.delete_checkpoint(fence.training_id)
    reporter.status(status, **{k: v for k, v in changes.items() if k in ("model_id", "error", "metrics")})
    return record


def nonfinite_tensor(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor with a NaN or an infinity, or None."""
    return next((k for k, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())), None)


def store_model(store: ArtifactStore, record: dict[str, Any], result: TrainResult) -> str:
    """Publish the trained model; refuses (TrainingDiverged) weights that are not finite."""
    tensors = result.model.state_dict()
    bad = nonfinite_tensor(tensors)
    if bad is not None:
        raise TrainingDiverged(f"training diverged: the final weights are not finite ({bad!r}); no model was stored")
    model_id = new_id("mdl")
    spec = result.spec
    manifest = {
        "id": model_id,
        "family": spec.family,
        "dataset": record["request"]["dataset"],
        "kind": spec.kind,
        "sample_shape": list(spec.sample_shape),
        "latent_dim": spec.latent_dim,
        "conditional": spec.num_classes > 0,
        "classes": record.get("classes") if spec.num_classes > 0 else None,
        "training_id": record["id"],
        "metrics": result.metrics,
        "created_at": utcnow(),
        "spec": spec.to_dict(),
        "config": record["config"],
    }
    store.put_model(manifest, tensors)
    return model_id


def train(training_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Run one training to its end (or hand it back on SIGTERM) and record the outcome in the store."""
    settings = settings or get_settings()
    store = ArtifactStore(settings.store_dir)
    record = store.get_training(training_id)
    job = get_current_job()
    job_id = job.id if job is not None else dispatch.current_job_id(record)
    if TrainingStatus(record["status"]).is_terminal():
        return {"status": record["status"], "skipped": True}
    if dispatch.current_job_id(record) != job_id:
        log.info(
            "training %s: job %s is stale (the current one is %s); skipped",
            training_id,
            job_id,
            dispatch.current_job_id(record),
        )
        return {"status": record["status"], "skipped": True}
    redis = Redis.from_url(
        settings.effective_redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
    )
    worker_name = os.environ.get("RQ_WORKER_ID", "direct")
    keeper = LeaseKeeper(redis, training_id, job_id, worker_name, settings.lease_ttl_s)
    keeper.acquire()  # before the record says running: a running record without a lease is a lost one
    try:
        return _run(store, redis, settings, Fence(store, training_id, job_id), record, worker_name)
    finally:
        keeper.release()
        redis.close()


def _run(
    store: ArtifactStore, redis: Redis, settings: Settings, fence: Fence, record: dict[str, Any], worker_name: str
) -> dict[str, Any]:
    training_id = fence.training_id
    reporter = TrainingReporter(redis, fence)
    if reporter.should_stop() and reporter.stop_reason == "canceled":
        return _finish(fence, reporter, TrainingStatus.canceled)
    started = fence.update(
        status=TrainingStatus.running.value,
        started_at=record.get("started_at") or utcnow(),
        attempts=int(record.get("attempts", 0)) + 1,
        error=None,
        worker={"name": worker_name, "pid": os.getpid(), "host": os.uname().nodename},
    )
    if started is None:
        return {"status": "superseded"}
    record = started
    reporter.status(TrainingStatus.running, attempt=record["attempts"])
    log.info(
        "training %s: started (%s on %s, attempt %d, job %s)",
        training_id,
        record["config"]["family"],
        record["request"]["dataset"],
        record["attempts"],
        fence.job_id,
    )
    checkpointer = StoreCheckpointer(store, fence, settings.checkpoint_interval_s, reporter)
    try:
        device = resolve_device(settings.device)
        catalog = Catalog(store, settings.data_dir, settings.mnist_url, settings.download_timeout_s)
        data = catalog.load(record["request"]["dataset"])
        result = run_training(
            TrainConfig.from_dict(record["config"]),
            data,
            device=device,
            on_progress=reporter.progress,
            progress_interval_s=settings.progress_interval_s,
            should_stop=reporter.should_stop,
            checkpointer=checkpointer,
            classifier_cache=store,
        )
    except GenserveError as exc:
        log.warning("training %s: failed: %s", training_id, exc.detail)
        return _finish(fence, reporter, TrainingStatus.failed, error=exc.detail, progress=reporter.last)
    except Exception as exc:
        log.exception("training %s: crashed", training_id)
        _finish(
            fence,
            reporter,
            TrainingStatus.failed,
            error=f"internal error: {type(exc).__name__}: {exc}",
            progress=reporter.last,
        )
        raise
    if result.canceled:
        return _stopped(store, redis, settings, fence, reporter, result)
    if not fence.holds():
        log.warning("training %s: superseded by another job; its model is not stored", training_id)
        return {"status": "superseded"}
    try:
        model_id = store_model(store, record, result)
    except GenserveError as exc:
        log.warning("training %s: failed: %s", training_id, exc.detail)
        return _finish(fence, reporter, TrainingStatus.failed, error=exc.detail, progress=reporter.last)
    log.info("training %s: succeeded, model %s", training_id, model_id)
    record = _finish(
        fence, reporter, TrainingStatus.succeeded, model_id=model_id, metrics=result.metrics, progress=reporter.last
    )
    try:
        events.publish_model_event(redis, "created", model_id)
    except RedisError as exc:
        log.warning("training %s: cannot announce model %s: %s", training_id, model_id, exc)
    return {"status": record["status"], "model_id": record.get("model_id")}


def _stopped(
    store: ArtifactStore,
    redis: Redis,
    settings: Settings,
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
        record = store.get_training(training_id)
        reason = f"worker shutting down; re-queued at step {result.steps} to resume from its checkpoint"
        try:
            requeued = dispatch.requeue(
                store,
                Queue(settings.queue_name, connection=redis),
                redis,
                settings,
                training_id,
                expect_job_id=fence.job_id,
                reason=reason,
                preemptions=int(record.get("preemptions", 0)) + 1,
                progress=reporter.last or record["progress"],
            )
        except RedisError as exc:  # the record already says queued: the watchdog enqueues it when Redis answers
            log.warning("training %s: re-queued in the store, but Redis is down (%s)", training_id, exc)
            return {"status": TrainingStatus.queued.value, "preempted": True}
        log.info("training %s: %s", training_id, reason)
        return {"status": TrainingStatus.queued.value if requeued else "superseded", "preempted": True}
    log.info("training %s: canceled at step %d", training_id, result.steps)
    return _finish(fence, reporter, TrainingStatus.canceled, progress=reporter.last)
