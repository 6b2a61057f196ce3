"""From a validated request to a response body: check it against the model, run it through the model's batcher,
encode it in the asked format."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np
import torch
from fastapi.responses import Response

from app.batching import DeadlineExceeded, QueueFull
from app.encoding import grid_png, npy_bytes, png_base64_list, scatter_png
from app.metrics import Metrics
from app.model_cache import LoadedModel, SampleJob
from app.schemas import SEED_MAX, Format
from models.errors import Invalid, TimedOut, Unavailable

SEED_HEADER = "X-Genserve-Seed"
QUEUE_FULL_RETRY_AFTER_S = 1


def draw_seed() -> int:
    return secrets.randbelow(SEED_MAX + 1)


def resolve_format(requested: Format | None, manifest: dict[str, Any], field: tuple[str, ...]) -> Format:
    kind = manifest["kind"]
    fmt = requested or (Format.png if kind == "images" else Format.json)
    if kind == "points" and fmt is Format.png:
        raise Invalid("format png is for image models; points come as json, npy, or grid (a scatter plot)",
                      field=field)
    return fmt


def labels_tensor(
    labels: list[int] | None, n: int, manifest: dict[str, Any], field: tuple[str, ...]
) -> torch.Tensor | None:
    """Labels for n rows: checked against the model's classes; cycling through them when omitted."""
    classes = manifest.get("classes") or []
    if not manifest["conditional"]:
        if labels is not None:
            raise Invalid("labels are only accepted by conditional models", field=field)
        return None
    if labels is None:
        return torch.arange(n, dtype=torch.int64) % len(classes)
    if len(labels) != n:
        raise Invalid(f"labels has {len(labels)} entries; n is {n}", field=field, limit=n)
    for i, label in enumerate(labels):
        if label >= len(classes):
            raise Invalid(f"label {label} is not a class index (0..{len(classes) - 1})", field=(*field, i),
                          limit=len(classes) - 1)
    return torch.tensor(labels, dtype=torch.int64)


def latent_tensor(z: list[list[float]], latent_dim: int, field: tuple[str, ...]) -> torch.Tensor:
    for i, row in enumerate(z):
        if len(row) != latent_dim:
            raise Invalid(f"latent vector {i} has {len(row)} numbers; the model's latent_dim is {latent_dim}",
                          field=(*field, i), limit=latent_dim)
    return torch.tensor(z, dtype=torch.float32)


async def run(
    loaded: LoadedModel, job: SampleJob, timeout_ms: float, metrics: Metrics
) -> np.ndarray:
    """The samples of one request, from a forward pass shared with whatever else is queued."""
    deadline = time.monotonic() + timeout_ms / 1000.0
    try:
        return await loaded.batcher.submit(job, rows=job.n, deadline=deadline)
    except QueueFull as exc:
        metrics.rejected.labels("queue_full").inc()
        raise Unavailable(f"model {loaded.id} is busy ({exc}); retry shortly",
                          retry_after_s=QUEUE_FULL_RETRY_AFTER_S) from None
    except DeadlineExceeded:
        metrics.rejected.labels("timeout").inc()
        raise TimedOut(f"not served within {timeout_ms:g} ms", field=("body", "timeout_ms")) from None


async def encode(
    samples: np.ndarray, fmt: Format, manifest: dict[str, Any], seed: int | None, executor: Executor,
    metrics: Metrics,
) -> Response:
    """The response body for `samples` in format `fmt` (PNG work runs in the encoding threads)."""
    start = time.perf_counter()
    headers = {SEED_HEADER: str(seed)} if seed is not None else {}
    loop = asyncio.get_running_loop()
    if fmt is Format.png:
        images = await loop.run_in_executor(executor, png_base64_list, samples)
        response: Response = Response(json.dumps({"images": images, "seed": seed}),
                                      media_type="application/json", headers=headers)
    elif fmt is Format.grid:
        draw = scatter_png if manifest["kind"] == "points" else grid_png
        response = Response(await loop.run_in_executor(executor, draw, samples), media_type="image/png",
                            headers=headers)
    elif fmt is Format.npy:
        response = Response(npy_bytes(samples), media_type="application/octet-stream", headers=headers)
    else:
        body = json.dumps({"samples": samples.tolist(), "seed": seed})
        response = Response(body, media_type="application/json", headers=headers)
    metrics.encode_time.labels(fmt.value).observe(time.perf_counter() - start)
    return response
