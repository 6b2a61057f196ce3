"""RQ entry points, enqueued by dotted path (`worker.jobs.train`). Thin glue: read the record, run
`models.training.train`, report progress to Redis, store the model. Runs inside the forked work horse, so the
device (and CUDA) is initialized here, never in the worker's parent process."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job

from app.settings import Settings, get_settings
from models.catalog import Catalog
from models.devices import resolve_device
from models.errors import GenserveError
from models.recipes import TrainConfig
from models.store import ArtifactStore, new_id, utcnow
from models.training import Progress, TrainResult
from models.training import train as run_training
from worker import events
from worker.status import TrainingStatus

log = logging.getLogger("genserve.worker")

CANCEL_POLL_INTERVAL_S = 0.5


class StoreCheckpointer:
    """Checkpoints of one training in the artifact store (safetensors + JSON, atomic)."""

    def __init__(self, store: ArtifactStore, training_id: str, interval_s: float) -> None:
        self.store = store
        self.training_id = training_id
        self.interval_s = interval_s

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        return self.store.load_checkpoint(self.training_id)

    def save(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.store.save_checkpoint(self.training_id, tensors, meta)


class TrainingReporter:
    """Progress and cancellation through Redis; a Redis outage never stops a training."""

    def __init__(self, redis: Redis, training_id: str) -> None:
        self.redis = redis
        self.training_id = training_id
        self.last: dict[str, Any] = {}
        self._cancel_checked_at = 0.0
        self._canceled = False

    def progress(self, p: Progress) -> None:
        self.last = {
            "step": p.step,
            "total_steps": p.total_steps,
            "fraction": p.step / p.total_steps if p.total_steps else 0.0,
            "eta_seconds": None if p.eta_s is None else round(p.eta_s, 1),
            "losses": {k: round(v, 6) for k, v in p.losses.items()},
        }
        self.event("progress", self.last)

    def status(self, status: TrainingStatus, **data: Any) -> None:
        self.event("status", {"status": status.value, **data})

    def event(self, name: str, data: dict[str, Any]) -> None:
        try:
            events.publish(self.redis, self.training_id, name, data)
        except RedisError as exc:
            log.warning("training %s: could not publish %s: %s", self.training_id, name, exc)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._canceled and now - self._cancel_checked_at >= CANCEL_POLL_INTERVAL_S:
            self._cancel_checked_at = now
            try:
                self._canceled = events.cancel_requested(self.redis, self.training_id)
            except RedisError as exc:
                log.warning("training %s: cannot check for cancel: %s", self.training_id, exc)
        return self._canceled


def _finish(
    store: ArtifactStore, reporter: TrainingReporter, training_id: str, status: TrainingStatus, **changes: Any
) -> dict[str, Any]:
    record = store.update_training(training_id, status=status.value, finished_at=utcnow(), **changes)
    reporter.status(status, **{k: v for k, v in changes.items() if k in ("model_id", "error", "metrics")})
    return record


def store_model(store: ArtifactStore, record: dict[str, Any], result: TrainResult) -> str:
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
    store.put_model(manifest, result.model.state_dict())
    return model_id


def train(training_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Run one training to its end and record the outcome in the store."""
    settings = settings or get_settings()
    store = ArtifactStore(settings.store_dir)
    job = get_current_job()
    redis: Redis = job.connection if job is not None else Redis.from_url(settings.effective_redis_url)
    reporter = TrainingReporter(redis, training_id)
    record = store.get_training(training_id)
    if TrainingStatus(record["status"]).is_terminal():
        return {"status": record["status"], "skipped": True}
    if reporter.should_stop():
        return _finish(store, reporter, training_id, TrainingStatus.canceled)

    record = store.update_training(
        training_id,
        status=TrainingStatus.running.value,
        started_at=record.get("started_at") or utcnow(),
        attempts=int(record.get("attempts", 0)) + 1,
        error=None,
    )
    reporter.status(TrainingStatus.running)
    log.info("training %s: started (%s on %s)", training_id, record["config"]["family"], record["request"]["dataset"])
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
            checkpointer=StoreCheckpointer(store, training_id, settings.checkpoint_interval_s),
        )
    except GenserveError as exc:
        log.warning("training %s: failed: %s", training_id, exc.detail)
        return _finish(store, reporter, training_id, TrainingStatus.failed, error=exc.detail, progress=reporter.last)
    except Exception as exc:
        log.exception("training %s: crashed", training_id)
        _finish(
            store, reporter, training_id, TrainingStatus.failed,
            error=f"internal error: {type(exc).__name__}: {exc}", progress=reporter.last,
        )
        raise
    if result.canceled:
        log.info("training %s: canceled at step %d", training_id, result.steps)
        record = _finish(store, reporter, training_id, TrainingStatus.canceled, progress=reporter.last)
    else:
        model_id = store_model(store, record, result)
        log.info("training %s: succeeded, model %s", training_id, model_id)
        record = _finish(
            store, reporter, training_id, TrainingStatus.succeeded,
            model_id=model_id, metrics=result.metrics, progress=reporter.last,
        )
    store.delete_checkpoint(training_id)
    return {"status": record["status"], "model_id": record.get("model_id")}
