"""The benchmark's HTTP floor: a trivial endpoint behind the same middleware and the same lean route handler as the
sampling route (enabled by GENSERVE_BENCH_ROUTES; not part of the public API)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.lean_route import LeanRoute

router = APIRouter(prefix="/_bench", include_in_schema=False, route_class=LeanRoute)
MAX_FLOOR_BYTES = 1 << 20
DEFAULT_FLOOR_BYTES = 512


@router.post("/floor")
async def floor(request: Request) -> Response:
    """Read the body, answer `?size=` bytes of JSON: what any endpoint costs before it does any work."""
    await request.body()
    try:
        size = int(request.query_params.get("size", DEFAULT_FLOOR_BYTES))
    except ValueError:
        size = DEFAULT_FLOOR_BYTES
    size = max(16, min(size, MAX_FLOOR_BYTES))
    return Response(b'{"pad":"' + b"x" * (size - 10) + b'"}', media_type="application/json")
