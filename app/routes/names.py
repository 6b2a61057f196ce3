"""Model names: their versions and aliases (models/registry.py). A training with `model_name` publishes its model
as the name's next version; aliases (`name@champion`) point at a version and move with one PUT."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from redis.exceptions import RedisError

from app import pages
from app.auth import CheckedRoute, requires
from app.deps import ServicesDep
from app.problems import PROBLEM_SCHEMA
from app.schemas import AliasRequest, ModelName, ModelNameList
from models.registry import ALIAS_PATTERN, NAME_PATTERN, NameEntry
from worker.state.events import publish_name_event

log = logging.getLogger("genserve.api")
router = APIRouter(prefix="/v1/model-names", tags=["model names"], route_class=CheckedRoute)
PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}


def _ecma(pattern: str) -> str:
    """A registry pattern (Python's, anchored at the end by `\\Z`) as JSON Schema writes it."""
    return "^" + pattern.removesuffix(r"\Z") + "$"


# Declared in the schema, checked by the registry (one check, with its own messages).
Name = Annotated[str, Path(json_schema_extra={"pattern": _ecma(NAME_PATTERN.pattern)})]
Alias = Annotated[str, Path(json_schema_extra={"pattern": _ecma(ALIAS_PATTERN.pattern)})]


def _public(entry: NameEntry) -> ModelName:
    return ModelName(
        name=entry.name,
        created_at=entry.created_at,
        versions=[
            {"version": v, "model_id": m, "aliases": entry.aliases_of(v)} for v, m in sorted(entry.versions.items())
        ],
        aliases=entry.aliases,
    )


async def _announce(services: ServicesDep, name: str) -> None:
    services.refs.forget(name)
    try:  # every other replica re-reads the name at its next use
        await run_in_threadpool(publish_name_event, services.redis, name)
    except RedisError as exc:
        log.warning("model name %s changed, but the other replicas were not told: %s", name, exc)


@router.get("", response_model=ModelNameList, responses={422: PROBLEM}, dependencies=[requires("sample")])
def list_names(
    services: ServicesDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=pages.MAX_LIMIT, description="Items per page.")] = pages.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, description="From a page's `next` link.")] = None,
) -> ModelNameList:
    """The model names with their versions and aliases, by name, a page at a time."""
    shown, after = pages.page(services.registry.names(), lambda e: [e.name], limit, cursor, newest_first=False)
    return ModelNameList(items=[_public(e) for e in shown], next=pages.next_link(request, after))


@router.get("/{name}", response_model=ModelName, responses={404: PROBLEM}, dependencies=[requires("sample")])
def get_name(name: Name, services: ServicesDep) -> ModelName:
    """One model name: its versions (oldest first, each with its model id and aliases) and aliases."""
    return _public(services.registry.get(name))


@router.put(
    "/{name}/aliases/{alias}",
    response_model=ModelName,
    responses={404: PROBLEM, 422: PROBLEM},
    dependencies=[requires("train")],
)
async def set_alias(name: Name, alias: Alias, body: AliasRequest, services: ServicesDep) -> ModelName:
    """Point `name@alias` at a version (created, or moved from the version it pointed at); every API replica
    resolves it to the new version within a second, and requests in flight finish on the old one."""
    entry = await run_in_threadpool(services.registry.set_alias, name, alias, body.version)
    await _announce(services, name)
    return _public(entry)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: PROBLEM},
    dependencies=[requires("train")],
)
async def delete_alias(name: Name, alias: Alias, services: ServicesDep) -> Response:
    """Remove an alias (the version it pointed at stays)."""
    await run_in_threadpool(services.registry.delete_alias, name, alias)
    await _announce(services, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
