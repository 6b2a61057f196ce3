"""Models: list, inspect, delete. Generating from them is in `app.routes.generation`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated, Literal, cast

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from redis.exceptions import RedisError

from app import pages
from app.auth import CheckedRoute, requires
from app.deps import ServicesDep
from app.problems import PROBLEM_SCHEMA, located_in
from app.schemas import Model, ModelList
from app.serving.edge import accepts_uploads, read_upload
from models import bundles, export
from models.manifest import ModelManifest
from models.nets import GenerativeModel
from models.registry import check_name
from models.store import new_id, utcnow
from worker.state.events import publish_model_event

log = logging.getLogger("genserve.api")
router = APIRouter(prefix="/v1/models", tags=["models"], route_class=CheckedRoute)
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


def _public(manifest: ModelManifest) -> Model:
    return Model.model_validate(manifest, from_attributes=True)


@router.get("", response_model=ModelList, dependencies=[requires("sample")])
def list_models(
    services: ServicesDep,
    request: Request,
    dataset: Annotated[str | None, Query(max_length=100, description="Only models of this dataset id.")] = None,
    family: Annotated[Literal["vae", "gan"] | None, Query(description="Only VAEs or only GANs.")] = None,
    model_name: Annotated[str | None, Query(max_length=63, description="Only versions of this model name.")] = None,
    tag: Annotated[
        str | None, Query(max_length=321, description="`key=value`: models with that tag value; `key`: with that tag.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=pages.MAX_LIMIT, description="Items per page.")] = pages.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="From a page's `next` link.")] = None,
) -> ModelList:
    """All stored models, newest first, a page at a time."""
    items = [
        m
        for m in services.store.list_models()
        if (dataset is None or m.dataset == dataset)
        and (family is None or m.family == family)
        and (model_name is None or m.name == model_name)
        and (tag is None or pages.tag_filter(m.tags, tag))
    ]
    shown, after = pages.page(items, lambda m: [m.created_at, m.id], limit, cursor, newest_first=True)
    return ModelList(items=[_public(m) for m in shown], next=pages.next_link(request, after))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Model,
    responses={413: PROBLEM, 415: PROBLEM, 422: PROBLEM},
    dependencies=[requires("train")],
)
@accepts_uploads
async def import_model(
    services: ServicesDep,
    response: Response,
    file: Annotated[UploadFile, File(description="A bundle from GET /v1/models/{ref}/bundle (a zip).")],
    name: Annotated[
        str | None,
        Form(description="Import it as the next version of this model name (else it has none)."),
    ] = None,
) -> Model:
    """Import a model bundle (another deployment's model) as a new model of this one. The bundle is checked as
    hostile input (zip safety, the manifest's schema, every tensor's name, shape, dtype and finiteness against the
    net the manifest describes); on any failure nothing is stored."""
    limits = services.settings.upload_limits()
    content = await read_upload(file, limits, "the bundle")
    if name is not None:
        check_name(name, ("body", "name"))
    with located_in("body"):
        manifest, tensors = await run_in_threadpool(bundles.read, content, limits)
    fresh = manifest.model_copy(
        update={
            "id": new_id("mdl"),
            "name": None,
            "version": None,
            "training_id": None,
            "parent_model_id": None,
            "imported_from": manifest.id,
            "created_at": utcnow(),
        }
    )
    if name is not None:
        fresh = await run_in_threadpool(services.registry.publish, fresh, tensors, name)
    else:
        await run_in_threadpool(services.store.put_model, fresh, tensors)
    with contextlib.suppress(RedisError):
        await run_in_threadpool(publish_model_event, services.redis, "created", fresh.id)
    response.headers["Location"] = f"/v1/models/{fresh.id}"
    return _public(fresh)


@router.get(
    "/{model_id}/bundle",
    response_class=Response,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}, 404: PROBLEM},
    dependencies=[requires("sample")],
)
async def export_bundle(model_id: str, services: ServicesDep) -> Response:
    """The model as one zip: its manifest, its weights (safetensors) and a model card (README.md with the dataset,
    the recipe, the metrics and a sample grid); `POST /v1/models` imports it elsewhere."""
    loaded = await services.models.get(services.refs.resolve(model_id))
    tensors = await run_in_threadpool(services.store.load_model_tensors, loaded.id)
    loop = asyncio.get_running_loop()  # the card's samples come from the model's own inference thread
    model = cast(GenerativeModel, loaded.model)
    body = await loop.run_in_executor(loaded.executor, bundles.export, loaded.manifest, tensors, model)
    filename = f"{loaded.manifest.name}-{loaded.manifest.version}" if loaded.manifest.name else loaded.id
    return Response(
        body, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{filename}.zip"'}
    )


@router.get(
    "/{model_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        404: PROBLEM,
        422: PROBLEM,
        503: PROBLEM,
    },
    dependencies=[requires("sample")],
)
async def export_model(
    model_id: str,
    services: ServicesDep,
    format: Annotated[Literal["onnx", "torchscript"], Query(description="onnx or torchscript")],
) -> Response:
    """The generator (GAN) or decoder (VAE) to run outside genserve: inputs `z` (batch, latent_dim) float32 and, for
    conditional models, `labels` (batch,) int64, any batch size; output the samples as the `npy` format gives them
    (images in [0, 1]). Built from a copy of the model on the CPU."""
    manifest = await run_in_threadpool(services.store.get_model, services.refs.resolve(model_id))
    tensors = await run_in_threadpool(services.store.load_model_tensors, manifest.id)
    body = await run_in_threadpool(export.export, manifest.spec, tensors, format)
    suffix = "onnx" if format == "onnx" else "pt"
    return Response(
        body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{manifest.id}.{suffix}"'},
    )


@router.get("/{model_id}", response_model=Model, responses={404: PROBLEM}, dependencies=[requires("sample")])
def get_model(model_id: str, services: ServicesDep) -> Model:
    """One model, with the metrics measured when its training ended (by id, `name:version` or `name@alias`)."""
    return _public(services.store.get_model(services.refs.resolve(model_id)))


@router.delete(
    "/{model_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: PROBLEM, 409: PROBLEM},
    dependencies=[requires("train")],
)
async def delete_model(model_id: str, services: ServicesDep) -> Response:
    """Delete a model and its weights; sampling from it then answers 404. A named version that an alias points
    to is a 409 naming the alias (move or delete the alias first)."""
    model_id = services.refs.resolve(model_id)
    manifest = await run_in_threadpool(services.store.get_model, model_id)
    await run_in_threadpool(services.registry.unregister, manifest)
    await run_in_threadpool(services.store.delete_model, model_id)
    await services.models.evict(model_id)
    try:  # other replicas evict it now rather than on its next request
        await run_in_threadpool(publish_model_event, services.redis, "deleted", model_id)
    except RedisError as exc:
        log.warning("model %s deleted, but the other replicas were not told: %s", model_id, exc)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
