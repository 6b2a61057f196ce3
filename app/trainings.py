"""Training requests: validate, record in the store, enqueue on RQ, report, cancel.

The API never trains: it enqueues `worker.jobs.train` by dotted path (worker/state/dispatch.py) and reads what
workers write, through the worker's state subpackage. Each enqueue gets its own RQ job id, recorded in the training
record as `job_id` (the fence: see worker/state/dispatch.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from redis.exceptions import LockError, RedisError
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.worker import Worker

from app.downloads import DatasetFetcher
from app.problems import located_in
from app.quotas import Quotas
from app.schemas import TrainingRequest
from app.settings import Settings
from app.webhooks import check_url
from models.data.builtin import BUILTINS
from models.data.catalog import Catalog, DatasetInfo
from models.errors import Conflict, Invalid, NotFound, Unavailable
from models.manifest import ModelManifest
from models.nets import ModelSpec, spec_for
from models.progress import Progress
from models.recipes import resolve_config
from models.seeds import draw_seed
from models.store import new_id, utcnow
from worker.state import connection, dispatch, events, keys, webhooks
from worker.state.records import TrainingRecord, TrainingRecords
from worker.state.status import TrainingStatus, assess

log = logging.getLogger("genserve.api")
STATUS_TIMEOUT_S = 1.0  # reads of live state (RQ job status, lease, progress)
BREAKER_S = 10.0  # after Redis failed to answer them, they are skipped this long
MAX_IDS_SHOWN = 5  # an ambiguous dataset name's problem lists this many of the ids
OWNER_LOCK_TTL_S = 30  # a creation holds its API key's lock at most this long (a crashed process frees it then)
OWNER_LOCK_WAIT_S = 10  # a second creation of the same key waits this long for the first
QUOTA_RETRY_AFTER_S = 30  # Retry-After of the active-trainings quota when no running training has an ETA
QUEUE_SNAPSHOT_S = 2.0  # queue positions and start estimates are recomputed at most this often
RECENT_DURATIONS = 20  # the start estimate assumes a queued training lasts the median of this many recent ones


@dataclass(frozen=True)
class QueueSnapshot:
    """Where the queued trainings stand: each waiting job's position (1 = next) and estimated seconds to its start.

    The estimate hands the waiting trainings, in order, to the workers as they come free: a running training frees
    its worker after its ETA, a waiting one is assumed to last the median duration of recently finished trainings.
    It is None where there is nothing to go on (no workers; no finished training to take a duration from)."""

    positions: dict[str, int]
    starts: dict[str, float | None]
    taken_at: float

    @classmethod
    def of(
        cls, waiting: list[str], running_etas: list[float | None], workers: int, typical_s: float | None
    ) -> QueueSnapshot:
        # When each worker comes free: a running training's ETA (unknown: the typical duration), an idle one now.
        free: list[float | None] = [eta if eta is not None else typical_s for eta in running_etas[:workers]]
        free += [0.0] * max(0, workers - len(free))
        starts: dict[str, float | None] = {}
        for job_id in waiting:
            known = [t for t in free if t is not None]
            if not free or len(known) < len(free):
                starts[job_id] = None
                continue
            start = min(known)
            starts[job_id] = start
            free.remove(start)
            free.append(None if typical_s is None else start + typical_s)
        return cls({job_id: i + 1 for i, job_id in enumerate(waiting)}, starts, time.monotonic())


@dataclass
class Trainings:
    records: TrainingRecords
    catalog: Catalog
    redis: Redis
    queue: Queue
    settings: Settings
    quotas: Quotas

    def __post_init__(self) -> None:
        self.fetcher = DatasetFetcher(self.catalog)  # built-in files fetched in the background, one at a time
        # Live state is read with a short timeout, and not at all for a while after Redis failed to answer: a hung
        # Redis then costs one timeout, not one per training listed.
        self.status_redis = connection.connect(self.settings.redis_target, socket_timeout_s=STATUS_TIMEOUT_S)
        self._redis_down_until = 0.0
        self._queue_snapshot: QueueSnapshot | None = None

    def close(self) -> None:
        self.status_redis.close()

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

    def create(self, req: TrainingRequest, owner: str) -> TrainingRecord:
        with located_in("body"):
            req = req.model_copy(update={"dataset": self._dataset_id(req.dataset)})
            self._check_limits(req)
            info = self._dataset(req.dataset)
        if req.webhook is not None:
            check_url(req.webhook, self.settings)  # (its errors are located in the body already)
        # One creation per API key at a time, across API replicas: the quota's count and the new record never race.
        lock = self.redis.lock(keys.quota_lock(owner), timeout=OWNER_LOCK_TTL_S, blocking_timeout=OWNER_LOCK_WAIT_S)
        if not lock.acquire():
            raise Unavailable("other trainings of this key are being created; retry in a moment", retry_after_s=1)
        try:
            self.quotas.check_training(owner, lambda: self._retry_after(owner))
            if info.builtin:
                return self._create(req, info, owner)
            with located_in("body"), self._locked(req.dataset):  # so that the dataset cannot go away meanwhile
                self._dataset(req.dataset)  # still there
                return self._create(req, info, owner)
        finally:
            # Expired meanwhile, or Redis went away (a failover) after the training was created: the lock's TTL
            # bounds it, and a created training must not be answered 503.
            with contextlib.suppress(LockError, RedisError):
                lock.release()

    def _parent(self, req: TrainingRequest) -> ModelManifest:
        """The stored model a training starts from (`init_from`): its config gives the options left out."""
        assert req.init_from is not None
        try:
            parent = self.records.store.get_model(req.init_from)
        except NotFound:
            raise Invalid(f"no model with id {req.init_from!r} to start from", field=("init_from",)) from None
        if parent.family != req.family:
            raise Invalid(
                f"model {parent.id} is a {parent.family.upper()}; this training is a {req.family.upper()}",
                field=("init_from",),
            )
        return parent

    def _retry_after(self, owner: str) -> int:
        """When the first of `owner`'s running trainings is expected to end (seconds; a default when unknown)."""
        mine = [r for r in self.list() if r.owner == owner and r.status is TrainingStatus.running]
        etas = [r.progress.eta_seconds for r in mine if r.progress.eta_seconds is not None]
        return max(1, math.ceil(min(etas))) if etas else QUOTA_RETRY_AFTER_S

    @contextlib.contextmanager
    def _locked(self, dataset_id: str) -> Iterator[None]:
        try:
            with self.records.store.dataset_lock(dataset_id):
                yield
        except NotFound:
            raise Invalid(
                f"no dataset with id {dataset_id!r}; GET /v1/datasets lists them", field=("dataset",)
            ) from None

    def _dataset_id(self, ref: str) -> str:
        """The id `ref` names: a dataset id, or an uploaded dataset's name that no other dataset has (ids first)."""
        if ref in BUILTINS:
            return ref
        with contextlib.suppress(NotFound):
            return self.catalog.info(ref).id
        named = [d.id for d in self.catalog.uploads() if d.name == ref]
        if len(named) == 1:
            return named[0]
        if named:
            shown = ", ".join(named[:MAX_IDS_SHOWN]) + (", ..." if len(named) > MAX_IDS_SHOWN else "")
            raise Invalid(
                f"{len(named)} datasets are named {ref!r} ({shown}); give the id of the one to train on",
                field=("dataset",),
            )
        raise Invalid(f"no dataset with id or name {ref!r}; GET /v1/datasets lists them", field=("dataset",))

    def _dataset(self, dataset_id: str) -> DatasetInfo:
        try:
            return self.fetcher.fetch(dataset_id)
        except NotFound:
            raise Invalid(
                f"no dataset with id {dataset_id!r}; GET /v1/datasets lists them", field=("dataset",)
            ) from None

    def _create(self, req: TrainingRequest, info: DatasetInfo, owner: str) -> TrainingRecord:
        with located_in("body"):
            request = {**req.model_dump(exclude_none=True), "seed": req.seed if req.seed is not None else draw_seed()}
            parent = self._parent(req) if req.init_from is not None else None
            config = resolve_config(
                {**(parent.config or {}), **request} if parent is not None else request,
                dataset_id=req.dataset,
                kind=info.kind,
                sample_shape=tuple(info.shape),
                num_classes=info.num_classes,
                size=info.size,
            )
            if parent is not None:
                _same_architecture(parent, spec_for(config, info.kind, tuple(info.shape), info.num_classes))
        training_id = new_id("tr")
        record = TrainingRecord(
            id=training_id,
            status=TrainingStatus.queued,
            request=request,
            config=config.to_dict(),
            classes=info.classes,
            owner=owner,
            progress=Progress(total_steps=config.steps),
            job_id=dispatch.job_id_for(training_id, 1),
            enqueues=1,
            created_at=utcnow(),
        )
        self.records.put(record)
        try:
            dispatch.enqueue(self.queue, record, self.settings)
            self._queue_snapshot = None  # this process shows the new order at once (others within QUEUE_SNAPSHOT_S)
            events.publish_status(self.redis, training_id, TrainingStatus.queued)
        except RedisError:
            self.records.delete(training_id)  # nothing half-written: no record without a job
            raise
        return self.view(record)

    # --- read -------------------------------------------------------------------------------------------------------
    def views(self, records: list[TrainingRecord]) -> list[TrainingRecord]:
        """The records as the API shows them: status reconciled with RQ and the lease, live progress from Redis (two
        round trips for all of them); what the store knows alone while Redis does not answer."""
        active = [r for r in records if not r.is_terminal()]
        if not active or time.monotonic() < self._redis_down_until:
            return records
        try:
            verdicts = assess(self.status_redis, active)
            live = events.latest_progress_of(self.status_redis, [r.id for r in active])
        except RedisError as exc:
            log.warning("trainings: Redis does not answer (%s); answering from the store for %g s", exc, BREAKER_S)
            self._redis_down_until = time.monotonic() + BREAKER_S
            return records
        shown = [
            r
            if r.is_terminal()
            else r.model_copy(update={"status": verdicts[r.id].status, "progress": live[r.id] or r.progress})
            for r in records
        ]
        if any(r.status is TrainingStatus.queued for r in shown):
            try:
                snapshot = self.queue_snapshot()
            except RedisError as exc:
                log.warning("trainings: cannot read the queue (%s)", exc)
                return shown
            shown = [
                r.model_copy(
                    update={
                        "queue_position": snapshot.positions.get(r.current_job_id),
                        "start_eta_seconds": snapshot.starts.get(r.current_job_id),
                    }
                )
                if r.status is TrainingStatus.queued
                else r
                for r in shown
            ]
        return shown

    def queue_snapshot(self) -> QueueSnapshot:
        """The queue's order and start estimates, recomputed at most every QUEUE_SNAPSHOT_S."""
        snapshot = self._queue_snapshot
        if snapshot is not None and time.monotonic() - snapshot.taken_at < QUEUE_SNAPSHOT_S:
            return snapshot
        waiting = dispatch.waiting(Queue(self.queue.name, connection=self.status_redis))
        workers = Worker.count(connection=self.status_redis)
        records = self.records.list()
        running = [r for r in records if r.status is TrainingStatus.running]
        live = events.latest_progress_of(self.status_redis, [r.id for r in running]) if running else {}
        etas = [p.eta_seconds if (p := live.get(r.id)) is not None else None for r in running]
        finished = [r for r in records if r.status is TrainingStatus.succeeded and r.started_at and r.finished_at]
        durations = [_seconds(r.finished_at) - _seconds(r.started_at) for r in finished[:RECENT_DURATIONS]]  # type: ignore[arg-type]
        typical = statistics.median(durations) if durations else None
        self._queue_snapshot = QueueSnapshot.of(waiting, etas, workers, typical)
        return self._queue_snapshot

    def view(self, record: TrainingRecord) -> TrainingRecord:
        return self.views([record])[0]

    def get(self, training_id: str) -> TrainingRecord:
        return self.view(self.records.get(training_id))

    def list(
        self, status: TrainingStatus | None = None, keep: Callable[[TrainingRecord], bool] | None = None
    ) -> list[TrainingRecord]:
        """Every training (that `keep` keeps), newest first; with `status`, only those in it (queued ones in the
        order workers take them). Live state is read for the active ones only, in one round trip."""
        records = self.records.list()
        shown = self.views([r for r in records if keep(r)] if keep is not None else records)
        if status is None:
            return shown
        shown = [r for r in shown if r.status is status]
        if status is TrainingStatus.queued:
            shown.sort(key=lambda r: (r.queue_position is None, r.queue_position or 0, r.created_at))
        return shown

    def uses_dataset(self, dataset_id: str) -> bool:
        return any(r.dataset == dataset_id and not r.is_terminal() for r in self.list())

    # --- cancel -----------------------------------------------------------------------------------------------------
    def cancel(self, training_id: str) -> TrainingRecord:
        """Ask the training to stop: a queued one is canceled at once; a running one is reported `canceling` until
        its work horse, which checks the flag every step, ends it."""
        current = self.records.get(training_id)
        if current.is_terminal():
            raise Conflict(f"training {training_id} has already ended ({current.status.value})")
        live = self.view(current)  # before the flag: whether a work horse has it already
        events.request_cancel(self.redis, training_id)  # a running job sees this within a second
        events.publish_status(self.redis, training_id, TrainingStatus.canceling)
        self._queue_snapshot = None
        if live.status is TrainingStatus.queued:
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
                        webhooks.enqueue(self.redis, record, "completed")
                        return self.view(record)
            except (NoSuchJobError, InvalidJobOperation):
                pass  # picked up by a worker, which honours the flag (or lost: the watchdog honours it)
        return self.get(training_id)


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _same_architecture(parent: ModelManifest, spec: ModelSpec) -> None:
    """422 naming `init_from` unless the new training's net is the parent's (so its weights load as they are)."""
    if spec == parent.spec:
        return
    mine, theirs = spec.to_dict(), parent.spec.to_dict()
    differ = ", ".join(f"{k} {theirs.get(k)!r} -> {mine.get(k)!r}" for k in mine if mine.get(k) != theirs.get(k))
    raise Invalid(
        f"model {parent.id}'s net differs from this training's ({differ}); start from a model of the same "
        "architecture, data shape and classes",
        field=("init_from",),
    )
