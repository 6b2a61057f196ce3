"""Big requests in chunks: a request for more samples than one pass takes runs as a series of chunks of at most
`max_batch_size` rows, each queued in turn on the model's batcher, so that a pass never holds the batcher for more
than one chunk and small requests interleave with a big one.

The request's latents are drawn at once (the same rows one pass would use) and split, and every pass is
batch-invariant (models/sampling.py), so a chunked request gets the same samples, and the same bytes, as one pass
would give it. Each chunk is encoded to a piece (`encoding.FRAGMENT`) on the inference thread, as any pass is:
- npy, zip and jsonl bodies stream out piece by piece (a chunked HTTP response; npy also says its length), so a
  big answer is never built whole in memory, the next chunk is asked for only once the previous one was handed to
  the connection, and a client that goes away stops the work;
- png, json and grid bodies are one document: their pieces are joined (a grid is drawn from all rows, in the
  encoding threads).
The first chunk is served before the response starts, so a request that fails at once gets its problem answer;
a later chunk that fails (its own deadline, `timeout_ms` per chunk) ends the stream early, which a client sees as
a cut-off body (npy: shorter than its Content-Length).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import numpy as np
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from app.metrics import Metrics
from app.serving import sampling
from app.serving.encoding import (
    FRAGMENT,
    MEDIA_TYPES,
    Encoded,
    ZipStream,
    encode,
    json_from_items,
    npy_header,
    png_json_from_items,
    zip_name,
)
from app.serving.model_cache import LoadedModel, ModelCache, SampleJob

STREAMED = ("npy", "zip", "jsonl")


def chunk_size(loaded: LoadedModel) -> int:
    """The most rows one chunk (one pass) of a request takes: the batcher's pass size."""
    assert loaded.batcher is not None
    return loaded.batcher.max_batch_size


def slices(n: int, size: int) -> list[slice]:
    """Rows 0..n in consecutive slices of at most `size` (one, empty, when n is 0)."""
    return [slice(i, i + size) for i in range(0, max(n, 1), size)]


def pieces(job: SampleJob, size: int, latent_dim: int) -> list[SampleJob]:
    """The job as consecutive chunks of at most `size` rows, each encoded to its format's piece."""
    z = job.latents(latent_dim)
    fmt = FRAGMENT[job.fmt]
    return [
        SampleJob(
            n=min(size, job.n - rows.start),
            fmt=fmt,
            z=z[rows],
            labels=None if job.labels is None else job.labels[rows],
            view=job.view,
        )
        for rows in slices(job.n, size)
    ]


async def respond(
    models: ModelCache,
    loaded: LoadedModel,
    job: SampleJob,
    timeout_ms: float,
    metrics: Metrics,
    request: Request,
) -> Response:
    """The response to a job of more rows than one chunk."""
    parts = pieces(job, chunk_size(loaded), loaded.forward.latent_dim)
    first, loaded = await sampling.serve(models, loaded, parts[0], timeout_ms, metrics, request)
    headers = {} if job.seed is None else {sampling.SEED_HEADER: str(job.seed)}
    if job.fmt in STREAMED:
        body = _stream(models, loaded, job, first, parts[1:], timeout_ms, metrics)
        if job.fmt == "npy":
            shape = (job.n, *loaded.manifest.spec.sample_shape)
            headers["content-length"] = str(len(npy_header(shape)) + 4 * math.prod(shape))
        return StreamingResponse(body, media_type=MEDIA_TYPES[job.fmt], headers=headers)
    done = [first]
    for part in parts[1:]:
        encoded, loaded = await sampling.serve(models, loaded, part, timeout_ms, metrics, request)
        done.append(encoded)
    return sampling.response(await _whole(loaded, job, done))


async def _whole(loaded: LoadedModel, job: SampleJob, done: list[Encoded]) -> Encoded:
    """One document from its pieces, byte for byte what one pass would have encoded."""
    if job.fmt == "png":
        return Encoded(png_json_from_items([e.body for e in done], job.seed), MEDIA_TYPES["png"], job.seed)
    if job.fmt == "json":
        return Encoded(json_from_items([e.body for e in done], job.seed), MEDIA_TYPES["json"], job.seed)
    samples = np.frombuffer(b"".join(e.body for e in done), dtype=np.float32)
    samples = samples.reshape(job.n, *loaded.manifest.spec.sample_shape)
    loop = asyncio.get_running_loop()  # a picture of thousands of samples: in the encoding threads, not the loop
    return await loop.run_in_executor(loaded.encoders, encode, samples, job.fmt, loaded.kind, job.seed, job.view)


async def _stream(
    models: ModelCache,
    loaded: LoadedModel,
    job: SampleJob,
    first: Encoded,
    rest: list[SampleJob],
    timeout_ms: float,
    metrics: Metrics,
) -> AsyncIterator[bytes]:
    """The body piece by piece: each chunk is asked for once the previous piece has been sent."""
    archive = ZipStream() if job.fmt == "zip" else None
    index = 0

    def framed(piece: Encoded) -> bytes:
        nonlocal index
        if archive is None:
            return piece.body
        out = []
        for png in piece.files:
            out.append(archive.add(zip_name(index, job.n), png))
            index += 1
        return b"".join(out)

    if job.fmt == "npy":
        yield npy_header((job.n, *loaded.manifest.spec.sample_shape))
    yield framed(first)
    for part in rest:
        piece, loaded = await sampling.serve(models, loaded, part, timeout_ms, metrics)
        yield framed(piece)
    if archive is not None:
        yield archive.close()
