"""Builds the FastAPI app; the lifespan creates the long-lived parts (store, Redis, queue, model cache)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from rq import Queue

from app import model_events, problems
from app.auth import Guard, document_bearer_auth, load_keys
from app.deps import Services
from app.docs import add_docs
from app.metrics import Metrics, TrainingCollector, keep_snapshots
from app.model_refs import ModelRefs
from app.openapi import complete as complete_openapi
from app.quotas import Quotas, StreamSlots
from app.routes import datasets, generation, health, models, names, trainings
from app.schemas import RequestLimits
from app.serving.edge import EdgeMiddleware, upload_paths
from app.serving.model_cache import ModelCache, ServingOptions
from app.settings import Settings, get_settings
from app.trainings import Trainings
from app.ui import add_ui
from app.webhooks import Deliverer
from models.registry import ModelRegistry
from models.store import ArtifactStore
from worker.state import connection, dispatch
from worker.state.records import TrainingRecords
from worker.state.watchdog import Watchdog

log = logging.getLogger("genserve.api")

DESCRIPTION = """Train VAEs and GANs on your data and sample from them over plain HTTP.

1. Pick a dataset (`GET /v1/datasets`: built-ins such as `ring2d`, `digits`, `mnist`) or upload one.
2. `POST /v1/trainings` with `{"dataset": "ring2d", "family": "gan"}`; follow `GET /v1/trainings/{id}`
   or the server-sent events at `/v1/trainings/{id}/events` until it has succeeded.
3. `POST /v1/models/{model_id}/samples` with `{"n": 16, "seed": 1, "format": "grid"}`.

Errors are `application/problem+json` (RFC 9457) naming the offending field.
"""


def build_services(settings: Settings) -> Services:
    store: ArtifactStore = settings.artifact_store()
    catalog = settings.catalog(store)
    registry = ModelRegistry(store)
    redis = connection.connect(settings.redis_target)
    # Event streams hold a connection each while they block in XREAD: the pool has room for all of them.
    aredis = connection.connect_async(settings.redis_target, max_connections=settings.max_streams + 32)
    queue = Queue(settings.queue_name, connection=redis)
    metrics = Metrics(settings.metrics_dir)
    device = settings.torch_device()
    on_cuda = device.type == "cuda"
    cores = len(os.sched_getaffinity(0))
    encode_threads = settings.encode_threads or cores
    encoders = ThreadPoolExecutor(max_workers=encode_threads, thread_name_prefix="encode")
    cache = ModelCache(
        store,
        device,
        loader=ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader"),
        encoders=encoders,
        max_bytes=settings.model_cache_mb * 1024 * 1024,
        options=ServingOptions(
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue_rows=settings.max_queue_samples,
            encode_threads=encode_threads,
            pin_memory=settings.pin_memory == "on" or (settings.pin_memory == "auto" and on_cuda),
            compile=settings.compile == "on" or (settings.compile == "auto" and on_cuda),
            inline=settings.inline_inference == "on"
            or (settings.inline_inference == "auto" and device.type == "cpu" and cores == 1),
        ),
        metrics=metrics,
    )
    records = TrainingRecords(store)
    services = Services(
        settings=settings,
        store=store,
        catalog=catalog,
        registry=registry,
        refs=ModelRefs(registry),
        redis=redis,
        aredis=aredis,
        trainings=Trainings(records, catalog, redis, queue, settings, Quotas(records, catalog, settings)),
        quotas=Quotas(records, catalog, settings),
        streams=StreamSlots(settings.max_streams, settings.max_streams_per_key),
        models=cache,
        metrics=metrics,
        encoders=encoders,
    )
    metrics.add_collector(
        TrainingCollector(
            queue_depth=lambda: sum(len(q) for q in dispatch.queues(queue)),
            statuses=lambda: (r.status for r in records.list()),
        )
    )
    return services


async def watch(watchdog: Watchdog) -> None:
    """Re-queue (or fail) trainings whose worker was lost, every `watchdog_interval_s` (worker/state/watchdog.py)."""
    while True:
        await asyncio.sleep(watchdog.settings.watchdog_interval_s)
        try:
            await asyncio.to_thread(watchdog.run_once)
        except Exception:  # a bad round must not end the watch
            log.exception("watchdog: round failed")


def include_flat(app: FastAPI, router: APIRouter) -> None:
    """Add a router's routes to the app's own router, as `include_router` did before FastAPI 0.16x.

    `include_router` now keeps the router as a nested route that every request walks through (a measurable share of
    a trivial endpoint's CPU, BENCHMARKS.md); added directly, a route is matched in one step.
    """
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"include_flat takes API routes only, not {type(route).__name__}")
        app.router.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            operation_id=route.operation_id,
            include_in_schema=route.include_in_schema,
            response_class=route.response_class,
            name=route.name,
            openapi_extra=route.openapi_extra,
            route_class_override=type(route),  # LeanRoute stays lean
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "genserve API: store %s, redis %s, device %s (pid %d)",
            services.store.location,
            settings.redis_target,
            services.models.device,
            os.getpid(),
        )
        preload = [p.strip() for p in settings.preload_models.split(",") if p.strip()]
        preload_all = preload == ["all"]
        if preload_all:
            preload = [m.id for m in services.store.list_models()]
        await services.models.preload(preload)
        # Everything built so far lives as long as the process: keep it out of the collector's scans, which
        # otherwise walk the model and library objects again and again under load.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        listener = asyncio.create_task(
            model_events.listen(services.aredis, services.models, preload_all, stop, services.refs)
        )
        watchdog = asyncio.create_task(
            watch(Watchdog(services.store, services.redis, services.trainings.queue, settings))
        )
        deliverer = Deliverer(services.aredis, settings)
        delivering = asyncio.create_task(deliverer.run(stop))
        snapshots = asyncio.create_task(keep_snapshots(services.metrics.totals))
        yield
        stop.set()
        for task in (listener, watchdog, delivering, snapshots):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await deliverer.close()
        await services.models.close()
        services.models.loader.shutdown(wait=False)  # type: ignore[attr-defined]
        services.encoders.shutdown(wait=False)
        await services.aredis.aclose()
        with contextlib.suppress(OSError):
            services.metrics.totals.write_snapshot()  # the last counts stay in the totals of the others
        services.trainings.close()
        services.redis.close()

    keys = load_keys(settings.api_keys.get_secret_value(), settings.api_keys_file)
    guarded = bool(keys)
    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={422: {"description": "Invalid input (problem+json)"}},
        redirect_slashes=False,  # a redirect would run before the access check, its target built from Host
        docs_url=None,  # the docs are routes of app.docs: served offline, and behind the keys when asked
        redoc_url=None,
        openapi_url=None,
    )
    app.state.guard = (
        Guard(keys, settings.rate_limit_per_s, settings.rate_limit_burst, settings.auth_failures_per_s, services.aredis)
        if guarded
        else None
    )
    if guarded:
        document_bearer_auth(app)
    complete_openapi(app, settings)
    add_docs(app, public=not guarded or settings.public_docs)
    add_ui(app)
    if not guarded:
        log.warning("no API keys configured (GENSERVE_API_KEYS): the API is open to anyone who can reach it")
    app.state.services = services
    app.state.validation_context = RequestLimits.of(settings).context()
    problems.install(app)
    # Routes match in order: the sampling route (the hot path) first.
    for router in (
        generation.hot_router,
        models.router,
        generation.router,
        health.router,
        datasets.router,
        trainings.router,
        names.router,
    ):
        include_flat(app, router)
    app.add_middleware(
        EdgeMiddleware,
        stats=services.metrics.requests,
        json_limit=settings.max_request_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths=upload_paths(app.routes),
    )
    return app
