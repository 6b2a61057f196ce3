"""Dependency aliases: the long-lived parts built in the lifespan, reachable from route signatures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from app.metrics import Metrics
from app.model_refs import ModelRefs
from app.quotas import Quotas, StreamSlots
from app.serving.model_cache import ModelCache
from app.settings import Settings
from app.trainings import Trainings
from models.data.catalog import Catalog
from models.registry import ModelRegistry
from models.store import ArtifactStore


@dataclass
class Services:
    """Everything the lifespan builds; one instance per app on `app.state.services`."""

    settings: Settings
    store: ArtifactStore
    catalog: Catalog
    redis: Redis
    aredis: AsyncRedis
    trainings: Trainings
    quotas: Quotas
    streams: StreamSlots
    models: ModelCache
    metrics: Metrics
    encoders: ThreadPoolExecutor  # PNG encoding, off the event loop and in parallel
    registry: ModelRegistry  # model names, versions, aliases (in the store)
    refs: ModelRefs  # references (id, name:version, name@alias) to model ids, in memory


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs sync dependencies in its thread pool, a thread hop on every request."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
