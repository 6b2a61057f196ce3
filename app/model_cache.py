"""Loaded models, one batcher each, in an LRU cache bounded by a memory budget.

The store is the source of truth: a model is loaded from its safetensors weights on first use, and a model whose
manifest has disappeared (deleted through any API replica) is dropped from the cache on its next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.batching import Batcher, BatchStats
from models.errors import NotFound
from models.nets import ModelSpec, build_model
from models.sampling import InvariantForward, latents, to_numpy
from models.store import ArtifactStore

log = logging.getLogger("genserve.api")


@dataclass(frozen=True)
class SampleJob:
    """One request's rows: seeded latents (or given ones) and labels."""

    n: int
    seed: int | None = None
    z: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def latents(self, latent_dim: int) -> torch.Tensor:
        if self.z is not None:
            return self.z
        assert self.seed is not None
        return latents(self.seed, self.n, latent_dim)


@dataclass
class LoadedModel:
    manifest: dict[str, Any]
    model: torch.nn.Module
    forward: InvariantForward
    batcher: Batcher[SampleJob, np.ndarray]
    nbytes: int

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    def run_batch(self, jobs: list[SampleJob]) -> list[np.ndarray]:
        """One forward pass for all jobs (runs in the inference executor)."""
        d = self.forward.latent_dim
        z = torch.cat([j.latents(d) for j in jobs])
        labels = None
        if self.forward.num_classes:
            labels = torch.cat([j.labels for j in jobs if j.labels is not None])
        out = to_numpy(self.forward(z, labels))
        return np.split(out, np.cumsum([j.n for j in jobs])[:-1])


class ModelCache:
    def __init__(
        self,
        store: ArtifactStore,
        device: torch.device,
        *,
        executor: Executor,
        max_bytes: int,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue_rows: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.store = store
        self.device = device
        self.executor = executor
        self.max_bytes = max_bytes
        self.batcher_options: dict[str, Any] = {
            "max_batch_size": max_batch_size,
            "max_wait_ms": max_wait_ms,
            "max_queue_rows": max(max_queue_rows, max_batch_size),
        }
        self.on_batch = on_batch
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def loaded(self) -> list[str]:
        return list(self._models)

    @property
    def used_bytes(self) -> int:
        return sum(m.nbytes for m in self._models.values())

    def _load(self, model_id: str) -> tuple[dict[str, Any], torch.nn.Module, InvariantForward, int]:
        manifest = self.store.get_model(model_id)
        tensors = self.store.load_model_tensors(model_id)
        model = build_model(ModelSpec.from_dict(manifest["spec"]))
        model.load_state_dict(tensors)
        model.to(self.device).eval()
        nbytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
        forward = InvariantForward(model, self.device)
        log.info("model %s loaded on %s (%.1f MB, %s)", model_id, self.device, nbytes / 1e6, forward.rule.describe())
        return manifest, model, forward, nbytes

    async def get(self, model_id: str) -> LoadedModel:
        """The loaded model, loading it on first use; NotFound when the store no longer has it."""
        if not self.store.has_model(model_id):
            await self.evict(model_id)
            raise NotFound(f"no model with id {model_id!r}")
        loaded = self._models.get(model_id)
        if loaded is not None:
            self._models.move_to_end(model_id)
            return loaded
        lock = self._locks.setdefault(model_id, asyncio.Lock())
        async with lock:
            loaded = self._models.get(model_id)
            if loaded is None:
                loop = asyncio.get_running_loop()
                manifest, model, forward, nbytes = await loop.run_in_executor(self.executor, self._load, model_id)
                loaded = LoadedModel(manifest, model, forward, None, nbytes)  # type: ignore[arg-type]
                loaded.batcher = Batcher(
                    loaded.run_batch, executor=self.executor, on_batch=self.on_batch, **self.batcher_options
                )
                self._models[model_id] = loaded
                await self._enforce_budget(keep=model_id)
        self._locks.pop(model_id, None)
        return loaded

    async def _enforce_budget(self, keep: str) -> None:
        while self.used_bytes > self.max_bytes and len(self._models) > 1:
            oldest = next(iter(self._models))
            if oldest == keep:
                self._models.move_to_end(oldest)
                continue
            await self.evict(oldest)

    async def evict(self, model_id: str) -> None:
        loaded = self._models.pop(model_id, None)
        if loaded is not None:
            await loaded.batcher.close()
            log.info("model %s evicted", model_id)

    async def close(self) -> None:
        for model_id in list(self._models):
            await self.evict(model_id)
