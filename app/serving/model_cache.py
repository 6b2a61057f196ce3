"""Loaded models, one batcher each, in an LRU cache bounded by a memory budget.

The store is the source of truth: a model is loaded from its safetensors weights on first use (or at start, from
the preload list, or when a worker announces it), and a model whose manifest has disappeared (deleted through any API
replica) is dropped on its next request. Evicting a model lets its queued requests finish first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from app.metrics import Metrics
from app.serving.batching import Batcher
from app.serving.encoding import DEFAULT_VIEW, Encoded, View, encode_batch
from models.errors import NotFound
from models.manifest import ModelManifest
from models.nets import build_model
from models.plots import PointsFrame
from models.sampling import (
    InvariantForward,
    PaddingRule,
    calibration_key,
    latents,
    prepare_for_inference,
    to_numpy,
)
from models.store import ArtifactStore

log = logging.getLogger("genserve.api")
STORE_RECHECK_S = 10.0  # the longest a deletion missed by the models channel (Redis away) goes unnoticed


@dataclass(frozen=True)
class SampleJob:
    """One request's rows (seeded or given latents, labels) and the format its response body takes."""

    n: int
    fmt: str
    seed: int | None = None
    z: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    view: View = DEFAULT_VIEW

    def latents(self, latent_dim: int) -> torch.Tensor:
        if self.z is not None:
            return self.z
        assert self.seed is not None
        return latents(self.seed, self.n, latent_dim)


@dataclass(frozen=True)
class ServingOptions:
    """How models are run: batching bounds, encoding threads, and the accelerator knobs."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue_rows: int = 4096
    encode_threads: int = 1
    pin_memory: bool = False
    compile: bool = False
    inline: bool = False  # forward passes on the event loop's thread (app/batching.py says when that pays)


@dataclass
class LoadedModel:
    manifest: ModelManifest
    model: torch.nn.Module
    forward: InvariantForward
    nbytes: int
    encoders: Executor
    options: ServingOptions
    metrics: Metrics | None
    # This model's own inference thread: its passes, reconstructions and score chunks run there in turn, and a long
    # job on one model never holds up another model's passes.
    executor: ThreadPoolExecutor
    batcher: Batcher[SampleJob, Encoded] | None = None  # run_batch may put a job's exception in its slot
    # Points models: the training data's frame for scatter plots, read from the dataset at the first grid request
    # (None once known to be gone); `frame_read` says whether it was.
    frame: PointsFrame | None = None
    frame_read: bool = False
    checked_at: float = field(default_factory=time.monotonic)  # when the store last said it still has the model
    rule_known: bool = False  # whether loading it found its padding rule known (else it calibrated)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def run_batch(self, jobs: list[SampleJob]) -> list[Encoded | Exception]:
        """One forward pass for all jobs, then each job's response body (runs in the inference thread).

        Failures stay with the request that caused them: a body that cannot be made fails its own job only, and a
        pass that fails as a whole runs again job by job, so that only the culprit gets the error.
        """
        try:
            return self._run_batch(jobs)
        except Exception:
            if len(jobs) == 1:
                raise
            log.warning("model %s: a pass of %d requests failed; running them one by one", self.id, len(jobs))
            return [self._run_alone(job) for job in jobs]

    def _run_alone(self, job: SampleJob) -> Encoded | Exception:
        try:
            return self._run_batch([job])[0]
        except Exception as exc:
            return exc

    def _run_batch(self, jobs: list[SampleJob]) -> list[Encoded | Exception]:
        start = time.perf_counter()
        d = self.forward.latent_dim
        z = torch.cat([j.latents(d) for j in jobs])
        labels = None
        if self.forward.num_classes:
            labels = torch.cat([j.labels for j in jobs if j.labels is not None])
        out = to_numpy(self.forward(z, labels))
        mid = time.perf_counter()
        # Threads pay only with several cores to use (encode_threads > 1) and several bodies to make.
        threads = self.options.encode_threads > 1 and len(jobs) > 1
        encoded = encode_batch(out, jobs, self.kind, self.encoders.map if threads else map)
        if self.metrics is not None:
            self.metrics.forward_time.observe(mid - start)
            self.metrics.encode_time.labels(jobs[0].fmt if len(jobs) == 1 else "batch").observe(
                time.perf_counter() - mid
            )
        return encoded

    def reconstruct(self, x: np.ndarray, labels: torch.Tensor | None) -> np.ndarray:
        """Encode and decode inputs (VAE; runs in the inference thread, a chunk of inputs at a time)."""
        with torch.inference_mode():
            device = self.forward.device
            out = self.model.reconstruct(  # type: ignore[operator]
                torch.from_numpy(x).to(device), None if labels is None else labels.to(device)
            )
            return out.float().cpu().numpy()

    def encode_inputs(self, x: np.ndarray, labels: torch.Tensor | None) -> tuple[list[list[float]], list[list[float]]]:
        """The posterior mean and log-variance of each input (VAE; runs in the inference thread)."""
        with torch.inference_mode():
            device = self.forward.device
            mu, logvar = self.model.encode(  # type: ignore[operator]
                torch.from_numpy(x).to(device), None if labels is None else labels.to(device)
            )
        return mu.float().cpu().tolist(), logvar.float().cpu().tolist()

    def score(self, x: np.ndarray, labels: torch.Tensor | None, eps: torch.Tensor) -> list[float]:
        """The IWAE bound on log p(x) per input, with the importance samples' noise `eps` (k, latent_dim) shared by
        every input (VAE; runs in the inference thread)."""
        with torch.inference_mode():
            device = self.forward.device
            out = self.model.log_likelihood_bound(  # type: ignore[operator]
                torch.from_numpy(x).to(device),
                None if labels is None else labels.to(device),
                eps.shape[0],
                eps=eps.to(device),
            )
            return [float(v) for v in out.double().cpu()]


class ModelCache:
    def __init__(
        self,
        store: ArtifactStore,
        device: torch.device,
        *,
        loader: Executor,
        encoders: Executor,
        max_bytes: int,
        options: ServingOptions,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.device = device
        self.loader = loader  # loads (and calibrates) models, off the event loop and off every inference thread
        self.encoders = encoders
        self.max_bytes = max_bytes
        self.options = options
        self.metrics = metrics
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()  # store rechecks (`cached`), batchers closing (`evict`)
        # Padding rules by `calibration_key`: a cold load of a net whose shapes were seen before skips calibration.
        self._rules: dict[str, PaddingRule] = {}

    @property
    def loaded(self) -> list[str]:
        return list(self._models)

    @property
    def used_bytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def _load(self, model_id: str) -> LoadedModel:
        manifest = self.store.get_model(model_id)
        tensors = self.store.load_model_tensors(model_id)
        model = build_model(manifest.spec)
        model.load_state_dict(tensors)
        model = prepare_for_inference(model, self.device)
        nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        key = calibration_key(manifest.spec.to_dict(), self.device, compile=self.options.compile)
        rule = self._rules.get(key) or self._stored_rule(key)
        forward = InvariantForward(
            model, self.device, rule, pin_memory=self.options.pin_memory, compile=self.options.compile
        )
        if rule is None:
            self._keep_rule(key, forward.rule)
        self._rules[key] = forward.rule
        log.info(
            "model %s loaded on %s (%.1f MB, %s%s)",
            model_id,
            self.device,
            nbytes / 1e6,
            forward.rule.describe(),
            "" if rule is None else ", rule known",
        )
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inference-{model_id}")
        loaded = LoadedModel(manifest, model, forward, nbytes, self.encoders, self.options, self.metrics, executor)
        loaded.rule_known = rule is not None
        return loaded

    def _stored_rule(self, key: str) -> PaddingRule | None:
        """A padding rule another process found for nets of this key; None when there is none (or the store cannot
        say: calibrating is always correct, only slower)."""
        try:
            found = self.store.get_calibration(key)
        except Exception as exc:
            log.warning("could not read padding rule %s from the store: %s", key, exc)
            return None
        return None if found is None else PaddingRule.from_dict(found)

    def _keep_rule(self, key: str, rule: PaddingRule) -> None:
        try:
            self.store.put_calibration(key, rule.to_dict())
        except Exception as exc:  # a read-only store: later processes calibrate again
            log.warning("could not keep padding rule %s in the store: %s", key, exc)

    def _batcher(self, loaded: LoadedModel) -> Batcher[SampleJob, Encoded]:
        o = self.options
        return Batcher(
            loaded.run_batch,
            max_batch_size=o.max_batch_size,
            max_wait_ms=o.max_wait_ms,
            max_queue_rows=max(o.max_queue_rows, o.max_batch_size),
            executor=loaded.executor,
            on_batch=None if self.metrics is None else self.metrics.observe_batch,
            inline=o.inline,
        )

    def cached(self, model_id: str) -> LoadedModel | None:
        """The loaded model if it is in memory, else None. A deletion through any replica evicts it at once (the
        models channel, app/model_events.py); the store is asked again only every STORE_RECHECK_S, in the
        background, in case an announcement was lost while Redis was down: the sampling hot path does no store I/O
        (on object storage, a request each)."""
        loaded = self._models.get(model_id)
        if loaded is None:
            return None
        now = time.monotonic()
        if now - loaded.checked_at >= STORE_RECHECK_S:
            loaded.checked_at = now  # one recheck at a time
            self._recheck(model_id)
        self._models.move_to_end(model_id)
        return loaded

    def _recheck(self, model_id: str) -> None:
        try:
            task = asyncio.get_running_loop().create_task(self._confirm(model_id))
        except RuntimeError:  # no event loop here: the next caller with one rechecks
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _confirm(self, model_id: str) -> None:
        try:
            present = await asyncio.get_running_loop().run_in_executor(self.loader, self.store.has_model, model_id)
        except Exception as exc:  # the store unreachable for a moment: keep serving, ask again next time
            log.warning("could not recheck model %s in the store: %s", model_id, exc)
            return
        if not present:
            log.info("model %s is no longer in the store: evicted", model_id)
            await self.evict(model_id)

    async def get(self, model_id: str) -> LoadedModel:
        """The loaded model, loading it on first use (once, however many requests wait for it: they wait on one
        lock, and only the first asks the store); NotFound when the store does not have it."""
        loaded = self.cached(model_id)
        if loaded is not None:
            return loaded
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        try:
            async with lock:
                loaded = self._models.get(model_id)
                if loaded is None:
                    loop = asyncio.get_running_loop()
                    started = time.perf_counter()
                    if not await loop.run_in_executor(self.loader, self.store.has_model, model_id):
                        raise NotFound(f"no model with id {model_id!r}")
                    loaded = await loop.run_in_executor(self.loader, self._load, model_id)
                    await self._make_room(loaded.nbytes)
                    loaded.batcher = self._batcher(loaded)
                    self._models[model_id] = loaded  # no await since the room was made: the budget holds
                    if self.metrics is not None:
                        self.metrics.model_loads.labels("known" if loaded.rule_known else "calibrated").observe(
                            time.perf_counter() - started
                        )
                    self._count_loaded()
        finally:
            self._locks.pop(model_id, None)
        return loaded

    async def preload(self, model_ids: list[str]) -> None:
        """Load models ahead of their first request; unknown ids are logged, not fatal."""
        for model_id in model_ids:
            try:
                await self.get(model_id)
            except NotFound:
                log.warning("preload: no model %s in the store", model_id)

    async def _make_room(self, nbytes: int) -> None:
        """Evict least recently used models until `nbytes` more fit in the budget (all of them, for a model larger
        than the whole budget). The caller inserts right after, with no await in between, so that concurrent loads
        never hold more than the budget between them."""
        while self._models and self.used_bytes + nbytes > self.max_bytes:
            oldest = next(iter(self._models))
            log.info("model cache over %d MB: evicting %s", self.max_bytes // 2**20, oldest)
            await self.evict(oldest)

    async def evict(self, model_id: str) -> None:
        """Drop a model; requests already queued for it are served first."""
        loaded = self._models.pop(model_id, None)
        if loaded is not None:
            if loaded.batcher is not None:
                # A task of its own: the caller (a request that made room) may be cancelled, and the batcher must
                # still drain and stop rather than be left waiting forever.
                closing = asyncio.get_running_loop().create_task(loaded.batcher.close(drain=True))
                self._background.add(closing)
                closing.add_done_callback(self._background.discard)
                await asyncio.shield(closing)
            # Its inference thread ends when the last request holding the model lets go of it (the executor is
            # collected), so a reconstruction or a scoring still running finishes.
            log.info("model %s evicted", model_id)
            if self.metrics is not None:
                self.metrics.model_evictions.inc()
            self._count_loaded()

    def _count_loaded(self) -> None:
        if self.metrics is not None:
            self.metrics.models_loaded.set(len(self._models))
            self.metrics.models_loaded_bytes.set(self.used_bytes)

    async def close(self) -> None:
        for model_id, loaded in list(self._models.items()):
            await self.evict(model_id)
            loaded.executor.shutdown(wait=False)
