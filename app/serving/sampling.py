"""From a validated request to a response body: check it against the model, run it through the model's batcher,
encode it in the asked format."""

from __future__ import annotations

import asyncio
import time

import torch
from fastapi import Request
from fastapi.responses import Response

from app.metrics import Metrics
from app.problems import ClientDisconnected
from app.schemas import Format
from app.serving.batching import Closed, DeadlineExceeded, QueueFull
from app.serving.encoding import Encoded
from app.serving.model_cache import LoadedModel, ModelCache, SampleJob
from models.errors import Invalid, TimedOut, Unavailable
from models.manifest import ModelManifest

SEED_HEADER = "X-Genserve-Seed"
SEED_HEADER_RAW = SEED_HEADER.lower().encode("latin-1")
QUEUE_FULL_RETRY_AFTER_S = 1
EVICTED_RELOADS = 5  # loads of a model evicted again and again before one request gives up (503)
DISCONNECT_WATCH_AFTER_S = 0.05
CLIENT_GONE = "client disconnected"


def resolve_format(requested: Format | None, manifest: ModelManifest, field: tuple[str, ...]) -> Format:
    kind = manifest.kind
    fmt = requested or (Format.png if kind == "images" else Format.json)
    if kind == "points" and fmt in (Format.png, Format.zip):
        raise Invalid(
            f"format {fmt.value} is for image models; points come as json, jsonl, npy, or grid (a scatter plot)",
            field=field,
        )
    if kind == "images" and fmt is Format.jsonl:
        raise Invalid("format jsonl is for point models; images come as png, zip, npy, json or grid", field=field)
    return fmt


def labels_tensor(
    labels: list[int] | None, n: int, manifest: ModelManifest, field: tuple[str, ...]
) -> torch.Tensor | None:
    """Labels for n rows: checked against the model's classes; cycling through them when omitted."""
    classes = manifest.classes or []
    if not manifest.conditional:
        if labels is not None:
            raise Invalid("labels are only accepted by conditional models", field=field)
        return None
    if labels is None:
        return torch.arange(n, dtype=torch.int64) % len(classes)
    if len(labels) != n:
        raise Invalid(f"labels has {len(labels)} entries; n is {n}", field=field, limit=n)
    for i, label in enumerate(labels):
        if not 0 <= label < len(classes):
            raise Invalid(
                f"label {label} is not a class index (0..{len(classes) - 1})", field=(*field, i), limit=len(classes) - 1
            )
    return torch.tensor(labels, dtype=torch.int64)


def latent_tensor(z: list[list[float]], latent_dim: int, field: tuple[str, ...]) -> torch.Tensor:
    """Latent vectors as float32 rows, each of the model's length and within float32's range."""
    for i, row in enumerate(z):
        if len(row) != latent_dim:
            raise Invalid(
                f"latent vector {i} has {len(row)} numbers; the model's latent_dim is {latent_dim}",
                field=(*field, i),
                limit=latent_dim,
            )
    tensor = torch.tensor(z, dtype=torch.float32)
    finite = torch.isfinite(tensor).all(dim=1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise Invalid(f"latent vector {i} holds a value beyond float32's range", field=(*field, i))
    return tensor


async def serve(
    models: ModelCache,
    loaded: LoadedModel,
    job: SampleJob,
    timeout_ms: float,
    metrics: Metrics,
    request: Request | None = None,
) -> tuple[Encoded, LoadedModel]:
    """`run`, and the model it ran on. A model evicted between its lookup and this request's turn (the cache made
    room for another) is loaded again, so an eviction never fails a request; only a cache so small for its traffic
    that the model is pushed out again every time answers 503."""
    for _ in range(EVICTED_RELOADS):
        try:
            return await run(loaded, job, timeout_ms, metrics, request), loaded
        except Closed:
            loaded = await models.get(loaded.id)
    metrics.rejected.labels("evicted").inc()
    raise Unavailable(
        f"model {loaded.id} was evicted {EVICTED_RELOADS} times before this request could run: the models in use do "
        "not fit in GENSERVE_MODEL_CACHE_MB; retry shortly",
        retry_after_s=QUEUE_FULL_RETRY_AFTER_S,
    )


async def run(
    loaded: LoadedModel, job: SampleJob, timeout_ms: float, metrics: Metrics, request: Request | None = None
) -> Encoded:
    """The response body of one request, from a forward pass shared with whatever else is queued.

    The request is dropped from the queue when its deadline passes (504) or its client goes away. Watching for the
    disconnect costs a task, so it starts only for requests still waiting after DISCONNECT_WATCH_AFTER_S.
    """
    assert loaded.batcher is not None
    try:
        future = loaded.batcher.enqueue(job, rows=job.n, deadline=time.monotonic() + timeout_ms / 1000.0)
    except QueueFull as exc:
        metrics.rejected.labels("queue_full").inc()
        raise Unavailable(
            f"model {loaded.id} is busy ({exc}); retry shortly", retry_after_s=QUEUE_FULL_RETRY_AFTER_S
        ) from None
    watch = None
    if request is not None:
        watch = asyncio.get_running_loop().call_later(DISCONNECT_WATCH_AFTER_S, _watch, future, request)
    try:
        return await future
    except DeadlineExceeded:
        metrics.rejected.labels("timeout").inc()
        raise TimedOut(f"not served within {timeout_ms:g} ms", field=("body", "timeout_ms")) from None
    except asyncio.CancelledError as exc:
        if exc.args == (CLIENT_GONE,):
            metrics.rejected.labels("disconnected").inc()
            raise ClientDisconnected() from None
        future.cancel()
        raise
    finally:
        if watch is not None:
            watch.cancel()


def _watch(future: asyncio.Future[Encoded], request: Request) -> None:
    """Start a task that withdraws the request when its client disconnects before the result is ready."""
    if future.done():
        return
    watcher = asyncio.ensure_future(_cancel_on_disconnect(future, request))
    future.add_done_callback(lambda _: watcher.cancel())


async def _cancel_on_disconnect(future: asyncio.Future[Encoded], request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    if not future.done():
        future.cancel(msg=CLIENT_GONE)


class EncodedResponse(Response):
    """A 200 response from a ready body, its raw headers built directly: Starlette's general header handling
    (lower-casing, charset detection, a dict per response) is a measurable part of a single-sample request."""

    def __init__(self, encoded: Encoded) -> None:
        self.status_code = 200
        self.background = None
        self.body = encoded.body
        self.media_type = encoded.media_type
        self.raw_headers = [
            (b"content-length", b"%d" % len(encoded.body)),
            (b"content-type", encoded.media_type.encode("latin-1")),
        ]
        if encoded.seed is not None:
            self.raw_headers.append((SEED_HEADER_RAW, b"%d" % encoded.seed))


def response(encoded: Encoded) -> Response:
    return EncodedResponse(encoded)
