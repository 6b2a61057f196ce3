"""Models: list, inspect, delete, and generate from them (samples, reconstructions, interpolations)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import RedisError
from starlette.datastructures import UploadFile

from app import sampling
from app.deps import ServicesDep
from app.lean_route import LeanRoute
from app.model_cache import LoadedModel, SampleJob
from app.problems import PROBLEM_SCHEMA, located_in
from app.schemas import (
    Format,
    InterpolationRequest,
    Model,
    ModelList,
    PointsReconstructionRequest,
    SampleRequest,
)
from models.errors import Invalid, TooLarge, UnsupportedFormat
from models.sampling import latents, slerp
from models.uploads import UploadLimits, parse_images
from worker.events import publish_model_event

log = logging.getLogger("genserve.api")
router = APIRouter(prefix="/v1/models", tags=["models"])
# The sampling route, the hot path: served by LeanRoute and matched before every other route.
hot_router = APIRouter(prefix="/v1/models", tags=["models"], route_class=LeanRoute)
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
SAMPLE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "png: JSON with base64 PNGs; grid: one PNG; npy: a NumPy file; json: nested lists",
        "content": {
            "application/json": {"example": {"samples": [[0.99, 0.02]], "seed": 42}},
            "image/png": {},
            "application/octet-stream": {},
        },
    },
    404: PROBLEM,
    422: PROBLEM,
    503: PROBLEM,
    504: PROBLEM,
}


def _public(manifest: dict[str, Any]) -> Model:
    return Model(**{k: v for k, v in manifest.items() if k in Model.model_fields})


@hot_router.post("/{model_id}/samples", responses=SAMPLE_RESPONSES, response_class=Response)
async def create_samples(model_id: str, body: SampleRequest, services: ServicesDep, request: Request) -> Response:
    """Draw n samples. Same seed, n and labels give the same samples, batched with others or not."""
    limit = services.settings.max_samples_per_request
    n = len(body.z) if body.z is not None and "n" not in body.model_fields_set else body.n
    if n > limit:
        raise Invalid(
            f"n is {n}; the limit is {limit} (GENSERVE_MAX_SAMPLES_PER_REQUEST)", field=("body", "n"), limit=limit
        )
    loaded = services.models.cached(model_id) or await services.models.get(model_id)
    manifest = loaded.manifest
    fmt = sampling.resolve_format(body.format, manifest, ("body", "format"))
    labels = sampling.labels_tensor(body.labels, n, manifest, ("body", "labels"))
    if body.z is not None:
        if len(body.z) != n:
            raise Invalid(f"z has {len(body.z)} vectors; n is {n}", field=("body", "z"), limit=n)
        z = sampling.latent_tensor(body.z, manifest["latent_dim"], ("body", "z"))
        job = SampleJob(n=n, fmt=fmt.value, z=z, labels=labels)
    else:
        seed = body.seed if body.seed is not None else sampling.draw_seed()
        job = SampleJob(n=n, fmt=fmt.value, seed=seed, labels=labels)
    timeout_ms = float(body.timeout_ms or services.settings.sample_timeout_ms)
    return sampling.response(await sampling.run(loaded, job, timeout_ms, services.metrics, request))


@router.get("", response_model=ModelList)
def list_models(services: ServicesDep) -> ModelList:
    """All stored models, newest first."""
    return ModelList(items=[_public(m) for m in services.store.list_models()])


@router.get("/{model_id}", response_model=Model, responses={404: PROBLEM})
def get_model(model_id: str, services: ServicesDep) -> Model:
    """One model, with the metrics measured when its training ended."""
    return _public(services.store.get_model(model_id))


@router.delete("/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: PROBLEM})
async def delete_model(model_id: str, services: ServicesDep) -> Response:
    """Delete a model and its weights; sampling from it then answers 404."""
    await run_in_threadpool(services.store.delete_model, model_id)
    await services.models.evict(model_id)
    try:  # other replicas evict it now rather than on its next request
        await run_in_threadpool(publish_model_event, services.redis, "deleted", model_id)
    except RedisError as exc:
        log.warning("model %s deleted, but the other replicas were not told: %s", model_id, exc)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{model_id}/interpolations", responses=SAMPLE_RESPONSES, response_class=Response)
async def create_interpolation(
    model_id: str, body: InterpolationRequest, services: ServicesDep, request: Request
) -> Response:
    """`steps` samples along the spherical path between two seeds' (or two given) latent vectors."""
    limit = services.settings.max_interpolation_steps
    if body.steps > limit:
        raise Invalid(
            f"steps is {body.steps}; the limit is {limit} (GENSERVE_MAX_INTERPOLATION_STEPS)",
            field=("body", "steps"),
            limit=limit,
        )
    loaded = await services.models.get(model_id)
    manifest = loaded.manifest
    d = manifest["latent_dim"]
    fmt = sampling.resolve_format(body.format, manifest, ("body", "format"))
    if manifest["conditional"] and body.label is None:
        raise Invalid("label is required for a conditional model", field=("body", "label"))
    labels = sampling.labels_tensor(
        None if body.label is None else [body.label] * body.steps, body.steps, manifest, ("body", "label")
    )
    ends = []
    for end in ("a", "b"):
        seed, z = getattr(body, f"seed_{end}"), getattr(body, f"z_{end}")
        ends.append(
            latents(seed, 1, d)[0] if seed is not None else sampling.latent_tensor([z], d, ("body", f"z_{end}"))[0]
        )
    job = SampleJob(n=body.steps, fmt=fmt.value, z=slerp(ends[0], ends[1], body.steps), labels=labels)
    timeout_ms = float(services.settings.sample_timeout_ms)
    return sampling.response(await sampling.run(loaded, job, timeout_ms, services.metrics, request))


def _validation_error(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


def vae_input_body(*, with_format: bool) -> dict[str, Any]:
    """The OpenAPI request body of the routes that take VAE inputs (reconstructions, scores): JSON points, or a
    multipart upload of images."""
    form: dict[str, Any] = {
        "file": {"type": "string", "format": "binary", "description": "a PNG/JPEG image, or a .zip / .npz of images"},
        "labels": {"type": "string", "description": "class per image, comma-separated"},
    }
    if with_format:
        form["format"] = {"type": "string", "enum": [f.value for f in Format]}
    return {
        "required": True,
        "content": {
            "application/json": {"schema": PointsReconstructionRequest.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": form}},
        },
    }


async def read_vae_input(
    request: Request, loaded: LoadedModel, services: ServicesDep
) -> tuple[np.ndarray, list[int] | None, Format | None]:
    """(inputs, labels, format) from JSON points or a multipart image upload, by the model's kind."""
    manifest = loaded.manifest
    content_type = request.headers.get("content-type", "")
    if manifest["kind"] == "points":
        if not content_type.startswith("application/json"):
            raise UnsupportedFormat(
                'point models take JSON: {"points": [[...], ...]}', field=("header", "content-type")
            )
        try:
            body = PointsReconstructionRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise _validation_error(exc) from None
        x = np.asarray(body.points, dtype=np.float32)
        dims = manifest["sample_shape"][0]
        if x.ndim != 2 or x.shape[1] != dims:
            raise Invalid(f"each point needs {dims} coordinates", field=("body", "points"), limit=dims)
        return x, body.labels, body.format
    if not content_type.startswith("multipart/form-data"):
        raise UnsupportedFormat(
            "image models take a multipart upload with a `file` field", field=("header", "content-type")
        )
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid("a `file` field with an image, a .zip or a .npz of images is required", field=("body", "file"))
    s = services.settings
    limits = UploadLimits(
        max_bytes=s.max_upload_bytes,
        max_images=s.max_samples_per_request,
        max_image_side=s.max_image_side,
        max_zip_entries=s.max_zip_entries,
        max_zip_ratio=s.max_zip_ratio,
        max_uncompressed_bytes=s.max_uncompressed_bytes,
    )
    content = await upload.read(limits.max_bytes + 1)
    if len(content) > limits.max_bytes:
        raise TooLarge(
            f"the file exceeds {limits.max_bytes} bytes (GENSERVE_MAX_UPLOAD_BYTES)",
            field=("body", "file"),
            limit=limits.max_bytes,
        )
    with located_in("body"):
        x = await run_in_threadpool(parse_images, upload.filename or "", content, limits)
    if list(x.shape[1:]) != list(manifest["sample_shape"]):
        raise Invalid(
            f"images are {list(x.shape[1:])}; this model takes {manifest['sample_shape']}",
            field=("body", "file"),
            limit=manifest["sample_shape"],
        )
    labels_raw, fmt_raw = form.get("labels"), form.get("format")
    try:
        labels = [int(v) for v in str(labels_raw).replace(",", " ").split()] if labels_raw else None
    except ValueError:
        raise Invalid("labels must be integers separated by commas", field=("body", "labels")) from None
    try:
        fmt = Format(str(fmt_raw)) if fmt_raw else None
    except ValueError:
        raise Invalid(f"format must be one of {[f.value for f in Format]}", field=("body", "format")) from None
    return x, labels, fmt


@router.post(
    "/{model_id}/reconstructions",
    responses=SAMPLE_RESPONSES,
    response_class=Response,
    openapi_extra={"requestBody": vae_input_body(with_format=True)},
)
async def create_reconstructions(model_id: str, request: Request, services: ServicesDep) -> Response:
    """VAE only: encode inputs and decode them again (points as JSON, images as a multipart upload)."""
    loaded = await services.models.get(model_id)
    manifest = loaded.manifest
    if manifest["family"] != "vae":
        raise Invalid("reconstructions need a VAE; this model is a GAN", field=("path", "model_id"))
    x, labels_list, fmt_requested = await read_vae_input(request, loaded, services)
    limit = services.settings.max_samples_per_request
    if len(x) > limit:
        raise Invalid(
            f"{len(x)} inputs; the limit is {limit} (GENSERVE_MAX_SAMPLES_PER_REQUEST)", field=("body",), limit=limit
        )
    fmt = sampling.resolve_format(fmt_requested, manifest, ("body", "format"))
    if manifest["conditional"] and labels_list is None:
        raise Invalid("labels (one per input) are required for a conditional model", field=("body", "labels"))
    labels = sampling.labels_tensor(labels_list, len(x), manifest, ("body", "labels"))
    loop = asyncio.get_running_loop()
    encoded = await loop.run_in_executor(services.models.executor, loaded.reconstruct, x, labels, fmt.value)
    return sampling.response(encoded)
