"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from app.auth import PUBLIC, requires
from app.deps import ServicesDep
from app.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, dependencies=[PUBLIC])
async def healthz() -> Health:
    """Liveness: 200 while the process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, dependencies=[PUBLIC])
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: Redis answers and the artifact store is writable; 503 says which is down."""

    def check() -> dict[str, str]:
        checks = {}
        try:
            services.redis.ping()
            checks["redis"] = "ok"
        except RedisError as exc:
            checks["redis"] = f"down: {exc}"
        checks["store"] = "ok" if services.store.is_writable() else f"not writable: {services.store.root}"
        return checks

    checks = await run_in_threadpool(check)
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


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
