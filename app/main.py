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

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from app import model_events, problems
from app.auth import Guard, load_keys
from app.deps import Services
from app.edge import EdgeMiddleware
from app.metrics import Metrics, TrainingCollector
from app.model_cache import ModelCache, ServingOptions
from app.routes import bench, datasets, health, models, scores, trainings
from app.settings import Settings, get_settings, safe_url
from app.trainings import Trainings
from models.catalog import Catalog
from models.devices import resolve_device
from models.store import ArtifactStore
from worker.watchdog import Watchdog

log = logging.getLogger("genserve.api")

REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0
DESCRIPTION = """Train VAEs and GANs on your data and sample from them over plain HTTP.

1. Pick a dataset (`GET /v1/datasets`: built-ins such as `ring2d`, `digits`, `mnist`) or upload one.
2. `POST /v1/trainings` with `{"dataset": "ring2d", "family": "gan"}`; follow `GET /v1/trainings/{id}`
   or the server-sent events at `/v1/trainings/{id}/events` until it has succeeded.
3. `POST /v1/models/{model_id}/samples` with `{"n": 16, "seed": 1, "format": "grid"}`.

Errors are `application/problem+json` (RFC 9457) naming the offending field.
"""


def build_services(settings: Settings) -> Services:
    store = ArtifactStore(settings.store_dir)
    catalog = Catalog(store, settings.data_dir, settings.mnist_url, settings.download_timeout_s)
    url = settings.effective_redis_url
    timeouts = {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S, "socket_timeout": REDIS_SOCKET_TIMEOUT_S}
    redis = Redis.from_url(url, **timeouts)
    aredis = AsyncRedis.from_url(url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)
    queue = Queue(settings.queue_name, connection=redis)
    metrics = Metrics()
    device = resolve_device(settings.device)
    on_cuda = device.type == "cuda"
    cores = len(os.sched_getaffinity(0))
    encode_threads = settings.encode_threads or cores
    encoders = ThreadPoolExecutor(max_workers=encode_threads, thread_name_prefix="encode")
    cache = ModelCache(
        store,
        device,
        executor=ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference"),
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
    services = Services(
        settings=settings,
        store=store,
        catalog=catalog,
        redis=redis,
        aredis=aredis,
        trainings=Trainings(store, catalog, redis, queue, settings),
        models=cache,
        metrics=metrics,
        encoders=encoders,
    )
    metrics.add_collector(
        TrainingCollector(
            queue_depth=lambda: len(queue), statuses=lambda: (r["status"] for r in store.list_trainings())
        )
    )
    return services


async def watch(watchdog: Watchdog) -> None:
    """Re-queue (or fail) trainings whose worker was lost, every GENSERVE_WATCHDOG_INTERVAL_S (worker/watchdog.py)."""
    while True:
        await asyncio.sleep(watchdog.settings.watchdog_interval_s)
        try:
            await asyncio.to_thread(watchdog.run_once)
        except Exception:  # a bad round must not end the watch
            log.exception("watchdog: round failed")


def include_flat(app: FastAPI, router: APIRouter) -> None:
    """Add a router's routes to the app's own router, as `include_router` did before FastAPI 0.16x.

    `include_router` now keeps the router as a nested route that every request walks through (about 20 µs of CPU per
    request on this machine, a sixth of a trivial endpoint's cost); added directly, a route is matched in one step.
    App-level dependencies (the API-key guard) apply to routes added this way as to any other.
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


def add_guarded_docs(app: FastAPI) -> None:
    """/openapi.json and /docs as API routes, so that the app-level key check covers them too."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="genserve")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "genserve API: store %s, redis %s, device %s (pid %d)",
            settings.store_dir,
            safe_url(settings.effective_redis_url),
            services.models.device,
            os.getpid(),
        )
        preload = [p.strip() for p in settings.preload_models.split(",") if p.strip()]
        preload_all = preload == ["all"]
        if preload_all:
            preload = [m["id"] for m in services.store.list_models()]
        await services.models.preload(preload)
        # Everything built so far lives as long as the process: keep it out of the collector's scans, which
        # otherwise walk the model and library objects again and again under load.
        gc.collect()
        gc.freeze()
        listener = asyncio.create_task(model_events.listen(services.aredis, services.models, preload_all))
        watchdog = asyncio.create_task(
            watch(Watchdog(services.store, services.redis, services.trainings.queue, settings))
        )
        yield
        for task in (listener, watchdog):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await services.models.close()
        services.models.executor.shutdown(wait=False)  # type: ignore[attr-defined]
        services.encoders.shutdown(wait=False)
        await services.aredis.aclose()
        services.redis.close()

    keys = load_keys(settings.api_keys.get_secret_value(), settings.api_keys_file)
    guarded = bool(keys)
    hide_docs = guarded and not settings.public_docs  # then the docs are routes of their own, behind the keys
    app = FastAPI(
        title="genserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={422: {"description": "Invalid input (problem+json)"}},
        dependencies=[Depends(Guard(keys, settings.rate_limit_per_s, settings.rate_limit_burst))] if guarded else [],
        docs_url=None if hide_docs else "/docs",
        redoc_url=None if hide_docs else "/redoc",
        openapi_url=None if hide_docs else "/openapi.json",
    )
    if hide_docs:
        add_guarded_docs(app)
    if not guarded:
        log.warning("no API keys configured (GENSERVE_API_KEYS): the API is open to anyone who can reach it")
    app.state.services = services
    problems.install(app)
    if settings.bench_routes:
        include_flat(app, bench.router)
    # Routes match in order: the sampling route (the hot path) first.
    include_flat(app, models.hot_router)
    for module in (models, health, datasets, trainings):
        include_flat(app, module.router)
    include_flat(app, scores.router)  # POST /v1/models/{id}/scores
    app.add_middleware(
        EdgeMiddleware,
        stats=services.metrics.requests,
        json_limit=settings.max_request_bytes,
        upload_limit=settings.max_upload_bytes,
    )
    return app
