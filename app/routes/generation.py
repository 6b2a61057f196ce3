"""Generating from a model: samples (the hot path), interpolations, and for VAEs reconstructions and scores."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from app.auth import CheckedRoute, requires
from app.deps import Services, ServicesDep
from app.problems import PROBLEM_SCHEMA, ClientDisconnected
from app.schemas import InterpolationRequest, SampleRequest
from app.serving import chunks, pictures, sampling, vae_inputs
from app.serving.edge import accepts_uploads
from app.serving.encoding import DEFAULT_VIEW, encode
from app.serving.lean_route import LeanRoute
from app.serving.model_cache import LoadedModel, SampleJob
from models.errors import Invalid, TimedOut
from models.sampling import latents, slerp
from models.seeds import draw_seed

PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
GENERATE = [requires("sample")]
router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=GENERATE, route_class=CheckedRoute)
# The sampling route, the hot path: served by LeanRoute and matched before every other route.
hot_router = APIRouter(prefix="/v1/models", tags=["models"], route_class=LeanRoute, dependencies=GENERATE)
SEED = {"type": ["integer", "null"], "description": "The seed used (null when latent vectors were given)."}
PNG_BODY = {
    "title": "format png (image models)",
    "type": "object",
    "required": ["images", "seed"],
    "properties": {
        "images": {
            "type": "array",
            "items": {"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
            "description": "One base64 PNG per sample, in order.",
        },
        "seed": SEED,
    },
}
JSON_BODY = {
    "title": "format json (the default for point models)",
    "type": "object",
    "required": ["samples", "seed"],
    "properties": {
        "samples": {
            "type": "array",
            "items": {"type": "array", "items": {}},
            "description": "One nested list per sample, of the model's sample shape (image values in [0, 1]).",
        },
        "seed": SEED,
    },
}
SAMPLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The body's type comes from `format` in the request body (not from `Accept`): **png** "
        '(the default for image models) → JSON `{"images": [base64 PNG, ...], "seed"}`; **json** (the default for '
        'point models) → JSON `{"samples": [[...], ...], "seed"}`; **grid** → one `image/png` (images tiled, or a '
        "scatter plot of points with axes); **npy** → a NumPy `.npy` file, float32, shape (n, *sample_shape); "
        "**zip** (image models) → a .zip of one PNG per sample; **jsonl** (point models) → one JSON list per line. "
        "More samples than one forward pass takes run in chunks; npy, zip and jsonl then stream (chunked "
        "transfer). When the samples come from a seed, it is also in the `X-Genserve-Seed` header.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [PNG_BODY, JSON_BODY]},
                "examples": {
                    "png": {"summary": "format png", "value": {"images": ["iVBORw0KGgo..."], "seed": 42}},
                    "json": {"summary": "format json", "value": {"samples": [[0.99, 0.02]], "seed": 42}},
                },
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}, "example": "(format grid: a PNG)"},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "example": "(format npy: a NumPy .npy file)",
            },
            "application/zip": {
                "schema": {"type": "string", "format": "binary"},
                "example": "(format zip: 00000.png, 00001.png, ...)",
            },
            "application/jsonl": {"schema": {"type": "string"}, "example": "[0.99, 0.02]\n[-1.01, 0.03]\n"},
        },
    },
    404: PROBLEM,
    422: PROBLEM,
    503: PROBLEM,
    504: PROBLEM,
}
SCORE_SEED = 0  # the importance samples' noise: fixed, so the same input always gets the same score
DEFAULT_SCORE_K = 100  # importance samples per input, when the request does not say
MAX_SCORE_K = 5000  # the most a request may ask for (the k of the published MNIST log-likelihoods)
SCORE_CHUNK_DECODES = 65_536  # inputs x k decoded per pass on the inference thread; sampling runs between passes


@hot_router.post("/{model_id}/samples", responses=SAMPLE_RESPONSES, response_class=Response)
async def create_samples(model_id: str, body: SampleRequest, services: ServicesDep, request: Request) -> Response:
    """Draw n samples. Same seed, n and labels give the same samples, batched with others or not."""
    limit = services.settings.max_samples_per_request
    n = len(body.z) if body.z is not None and "n" not in body.model_fields_set else body.n
    if n > limit:
        raise Invalid(
            f"n is {n}; the limit is {limit} (GENSERVE_MAX_SAMPLES_PER_REQUEST)", field=("body", "n"), limit=limit
        )
    model_id = services.refs.resolve(model_id)  # an id as it is; name:version and name@alias from memory
    loaded = services.models.cached(model_id) or await services.models.get(model_id)
    manifest = loaded.manifest
    fmt = sampling.resolve_format(body.format, manifest, ("body", "format"))
    labels = sampling.labels_tensor(body.labels, n, manifest, ("body", "labels"))
    view = DEFAULT_VIEW
    if pictures.wants_picture(fmt, body.scale, body.show_data):
        view = await pictures.view(fmt, body.scale, body.show_data, n, loaded, services.catalog, services.settings)
    if body.z is not None:
        if len(body.z) != n:
            raise Invalid(f"z has {len(body.z)} vectors; n is {n}", field=("body", "z"), limit=n)
        z = sampling.latent_tensor(body.z, manifest.latent_dim, ("body", "z"))
        job = SampleJob(n=n, fmt=fmt.value, z=z, labels=labels, view=view)
    else:
        seed = body.seed if body.seed is not None else draw_seed()
        job = SampleJob(n=n, fmt=fmt.value, seed=seed, labels=labels, view=view)
    timeout_ms = float(body.timeout_ms or services.settings.sample_timeout_ms)
    return await _run(services, loaded, job, timeout_ms, request)


@hot_router.post("/{model_id}/interpolations", responses=SAMPLE_RESPONSES, response_class=Response)
async def create_interpolation(
    model_id: str, body: InterpolationRequest, services: ServicesDep, request: Request
) -> Response:
    """`steps` samples along the spherical path between two seeds' (or two given) latent vectors; on a conditional
    model without `label`, one such path per class, class by class (a grid shows one class per row)."""
    limit = services.settings.max_interpolation_steps
    if body.steps > limit:
        raise Invalid(
            f"steps is {body.steps}; the limit is {limit} (GENSERVE_MAX_INTERPOLATION_STEPS)",
            field=("body", "steps"),
            limit=limit,
        )
    loaded = await services.models.get(services.refs.resolve(model_id))
    manifest = loaded.manifest
    d = manifest.latent_dim
    fmt = sampling.resolve_format(body.format, manifest, ("body", "format"))
    paths = len(manifest.classes or []) if manifest.conditional and body.label is None else 1
    n, most = body.steps * paths, services.settings.max_samples_per_request
    if n > most:
        raise Invalid(
            f"steps x classes is {body.steps} x {paths} = {n}; the limit is {most} (GENSERVE_MAX_SAMPLES_PER_REQUEST):"
            " ask for fewer steps or give a label",
            field=("body", "steps"),
            limit=most,
        )
    labels: torch.Tensor | None
    if paths > 1:
        labels = torch.arange(paths, dtype=torch.int64).repeat_interleave(body.steps)
    else:
        labels = sampling.labels_tensor(
            None if body.label is None else [body.label] * body.steps, body.steps, manifest, ("body", "label")
        )
    ends = []
    for end in ("a", "b"):
        seed, z = getattr(body, f"seed_{end}"), getattr(body, f"z_{end}")
        ends.append(
            latents(seed, 1, d)[0] if seed is not None else sampling.latent_tensor([z], d, ("body", f"z_{end}"))[0]
        )
    view = DEFAULT_VIEW
    if pictures.wants_picture(fmt, body.scale, body.show_data):
        columns = body.steps if paths > 1 else None
        view = await pictures.view(
            fmt, body.scale, body.show_data, n, loaded, services.catalog, services.settings, columns
        )
    path = slerp(ends[0], ends[1], body.steps).repeat(paths, 1)
    job = SampleJob(n=n, fmt=fmt.value, z=path, labels=labels, view=view)
    timeout_ms = float(services.settings.sample_timeout_ms)
    return await _run(services, loaded, job, timeout_ms, request)


async def _vae(model_id: str, services: ServicesDep, what: str) -> LoadedModel:
    loaded = await services.models.get(services.refs.resolve(model_id))
    if loaded.manifest.family != "vae":
        raise Invalid(f"{what} need a VAE; model {model_id} is a GAN", field=("path", "model_id"))
    return loaded


def _check_inputs(n: int, labels: list[int] | None, loaded: LoadedModel, services: ServicesDep) -> None:
    limit = services.settings.max_samples_per_request
    if n > limit:
        raise Invalid(
            f"{n} inputs; the limit is {limit} (GENSERVE_MAX_SAMPLES_PER_REQUEST)", field=("body",), limit=limit
        )
    if loaded.manifest.conditional and labels is None:
        raise Invalid("labels (one per input) are required for a conditional model", field=("body", "labels"))


async def _run(
    services: Services, loaded: LoadedModel, job: SampleJob, timeout_ms: float, request: Request
) -> Response:
    """The response to a sampling job: at once when it fits one pass, else in chunks (app/serving/chunks.py)."""
    if job.n <= chunks.chunk_size(loaded):
        encoded, _ = await sampling.serve(services.models, loaded, job, timeout_ms, services.metrics, request)
        return sampling.response(encoded)
    return await chunks.respond(services.models, loaded, job, timeout_ms, services.metrics, request)


@router.post(
    "/{model_id}/reconstructions",
    responses={**SAMPLE_RESPONSES, 415: PROBLEM},  # an uploaded file genserve cannot read
    response_class=Response,
    openapi_extra={"requestBody": vae_inputs.request_body(with_format=True)},
)
@accepts_uploads
async def create_reconstructions(model_id: str, request: Request, services: ServicesDep) -> Response:
    """VAE only: encode inputs and decode them again (points as JSON, images as a multipart upload)."""
    loaded = await _vae(model_id, services, "reconstructions")
    x, labels_list, fmt_requested = await vae_inputs.read(request, loaded, services.settings)
    _check_inputs(len(x), labels_list, loaded, services)
    fmt = sampling.resolve_format(fmt_requested, loaded.manifest, ("body", "format"))
    labels = sampling.labels_tensor(labels_list, len(x), loaded.manifest, ("body", "labels"))
    loop = asyncio.get_running_loop()
    out = []
    for rows in chunks.slices(len(x), chunks.chunk_size(loaded)):  # a pass each: sampling runs in between
        part = None if labels is None else labels[rows]
        out.append(await loop.run_in_executor(loaded.executor, loaded.reconstruct, x[rows], part))
    samples = np.concatenate(out)
    encoded = await loop.run_in_executor(loaded.encoders, encode, samples, fmt.value, loaded.kind, None)
    return sampling.response(encoded)


async def _json_answer_inputs(
    model_id: str, request: Request, services: ServicesDep, what: str
) -> tuple[LoadedModel, np.ndarray, list[int] | None]:
    """A VAE and its inputs (as reconstructions take them) for a route that answers JSON, so takes no `format`."""
    loaded = await _vae(model_id, services, what)
    x, labels_list, fmt = await vae_inputs.read(request, loaded, services.settings)
    if fmt is not None:
        raise Invalid(f"{what} come as JSON; format does not apply", field=("body", "format"))
    _check_inputs(len(x), labels_list, loaded, services)
    return loaded, x, labels_list


class EncodingResponse(BaseModel):
    """The approximate posterior q(z|x) of each input, in input order."""

    model_config = {
        "json_schema_extra": {"examples": [{"mean": [[0.12, -1.3]], "logvar": [[-4.1, -3.8]], "latent_dim": 2}]}
    }

    mean: list[list[float]] = Field(..., description="Posterior mean per input: a `z` to pass to samples.")
    logvar: list[list[float]] = Field(..., description="Posterior log-variance per input.")
    latent_dim: int


@router.post(
    "/{model_id}/encodings",
    response_model=EncodingResponse,
    responses={404: PROBLEM, 415: PROBLEM, 422: PROBLEM},
    openapi_extra={"requestBody": vae_inputs.request_body(with_format=False)},
)
@accepts_uploads
async def create_encodings(model_id: str, request: Request, services: ServicesDep) -> EncodingResponse:
    """VAE only: the latent code of each input (inputs as for reconstructions): its posterior mean and
    log-variance. Pass means back as `z` to samples, or as `z_a` / `z_b` to interpolations, to decode, mix or
    interpolate between real inputs."""
    loaded, x, labels_list = await _json_answer_inputs(model_id, request, services, "encodings")
    labels = sampling.labels_tensor(labels_list, len(x), loaded.manifest, ("body", "labels"))
    loop = asyncio.get_running_loop()
    mean: list[list[float]] = []
    logvar: list[list[float]] = []
    for rows in chunks.slices(len(x), chunks.chunk_size(loaded)):  # a pass each: sampling runs in between
        part = None if labels is None else labels[rows]
        m, lv = await loop.run_in_executor(loaded.executor, loaded.encode_inputs, x[rows], part)
        mean += m
        logvar += lv
    return EncodingResponse(mean=mean, logvar=logvar, latent_dim=loaded.manifest.latent_dim)


class ScoreResponse(BaseModel):
    """Per-input scores, in input order."""

    model_config = {"json_schema_extra": {"examples": [{"scores": [1.83, -412.5], "k": 100, "unit": "nats"}]}}

    scores: list[float] = Field(
        ...,
        description="log p(x) lower bound per input (the IWAE bound with k samples), "
        "nats; higher = more likely, so low scores flag outliers.",
    )
    k: int = Field(..., description="Importance samples per input.")
    unit: Literal["nats"] = "nats"


@router.post(
    "/{model_id}/scores",
    response_model=ScoreResponse,
    responses={404: PROBLEM, 415: PROBLEM, 422: PROBLEM},
    openapi_extra={"requestBody": vae_inputs.request_body(with_format=False)},
)
@accepts_uploads
async def create_scores(
    model_id: str,
    request: Request,
    services: ServicesDep,
    k: Annotated[int, Query(ge=1, le=MAX_SCORE_K, description="Importance samples per input.")] = DEFAULT_SCORE_K,
    timeout_ms: Annotated[
        int | None, Query(ge=1, le=600_000, description="Give up (504) when not done in time.")
    ] = None,
) -> ScoreResponse:
    """VAE only: a lower bound on log p(x) per input, in nats (higher = more likely), for outlier scoring.

    Inputs as for reconstructions: JSON `{"points": [[...], ...], "labels"?}` for point models, a multipart `file`
    (an image, a .zip or .npz of images) with optional `labels` for image models; labels are required for
    conditional models. The score is the importance-weighted bound of Burda et al. (2015) with `k` samples (the
    ELBO at k = 1; tighter, and slower, as k grows); the samples' noise is fixed, so the same input always gets
    the same score. Points: a log density in the data's units; images: the log-probability of the pixels under
    the decoder (gray values as Bernoulli targets), summed over pixels.

    The work is bounded: `k` times the number of inputs is at most GENSERVE_MAX_SCORE_DECODES (422 beyond), it runs
    in chunks on the model's inference thread with sampling in between, and it stops at `timeout_ms` (504) or when
    the client goes away.
    """
    loaded, x, labels_list = await _json_answer_inputs(model_id, request, services, "scores")
    budget = services.settings.max_score_decodes
    if k * len(x) > budget:
        raise Invalid(
            f"k x inputs is {k} x {len(x)} = {k * len(x)}; the limit is {budget} (GENSERVE_MAX_SCORE_DECODES): "
            "ask for a smaller k or send fewer inputs",
            field=("query", "k"),
            limit=budget,
        )
    labels = sampling.labels_tensor(labels_list, len(x), loaded.manifest, ("body", "labels"))
    eps = latents(SCORE_SEED, k, loaded.manifest.latent_dim)  # (k, L), shared by every input
    timeout_s = (timeout_ms or services.settings.sample_timeout_ms) / 1000.0
    deadline = time.monotonic() + timeout_s
    loop = asyncio.get_running_loop()
    rows = max(1, SCORE_CHUNK_DECODES // k)
    scores: list[float] = []
    for i in range(0, len(x), rows):  # one pass per chunk, so sample requests are served in between
        if time.monotonic() > deadline:
            raise TimedOut(f"not scored within {timeout_s * 1000:g} ms", field=("query", "timeout_ms"))
        if await request.is_disconnected():
            raise ClientDisconnected()
        part = None if labels is None else labels[i : i + rows]
        scores += await loop.run_in_executor(loaded.executor, loaded.score, x[i : i + rows], part, eps)
    return ScoreResponse(scores=scores, k=k)
