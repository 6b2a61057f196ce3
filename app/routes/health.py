"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.auth import PUBLIC, CheckedRoute, requires
from app.deps import ServicesDep
from app.schemas import Health, Readiness

log = logging.getLogger("genserve.api")
router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/healthz", response_model=Health, dependencies=[PUBLIC])
async def healthz() -> Health:
    """Liveness: 200 while the process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, dependencies=[PUBLIC])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: Redis answers and the artifact store is writable; 503 says which is down (why goes to the log:
    this route is public, so it names no host, port or path)."""

    def check() -> dict[str, str]:
        checks = {}
        try:
            services.redis.ping()
            checks["redis"] = "ok"
        except RedisError as exc:
            log.warning("readiness: Redis does not answer: %s", exc)
            checks["redis"] = "down"
        writable = services.store.is_writable()
        if not writable:
            log.warning("readiness: the artifact store at %s is not writable", services.store.location)
        checks["store"] = "ok" if writable else "not writable"
        return checks

    checks = await run_in_threadpool(check)
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.head("/healthz", include_in_schema=False, dependencies=[PUBLIC])
async def healthz_head() -> Response:
    """Liveness for probes that send HEAD."""
    return Response(status_code=200)


@router.head("/readyz", include_in_schema=False, dependencies=[PUBLIC])
async def readyz_head(services: ServicesDep) -> Response:
    """Readiness for probes that send HEAD: the status of GET /readyz, without its body."""
    return Response(status_code=(await readyz(services)).status_code)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
    dependencies=[requires("sample")],
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    data = await run_in_threadpool(generate_latest, services.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
