"""Models: list, inspect, delete. Generating from them is in `app.routes.generation`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from redis.exceptions import RedisError

from app.auth import CheckedRoute, requires
from app.deps import ServicesDep
from app.problems import PROBLEM_SCHEMA
from app.schemas import Model, ModelList
from models.manifest import ModelManifest
from worker.state.events import publish_model_event

log = logging.getLogger("genserve.api")
router = APIRouter(prefix="/v1/models", tags=["models"], route_class=CheckedRoute)
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


def _public(manifest: ModelManifest) -> Model:
    return Model.model_validate(manifest, from_attributes=True)


@router.get("", response_model=ModelList, dependencies=[requires("sample")])
def list_models(services: ServicesDep) -> ModelList:
    """All stored models, newest first."""
    return ModelList(items=[_public(m) for m in services.store.list_models()])


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
