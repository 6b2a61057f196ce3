"""The benchmark's HTTP floor: a trivial endpoint behind the same middleware as the real ones
(enabled by GENSERVE_BENCH_ROUTES; not part of the public API)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(prefix="/_bench", include_in_schema=False)
MAX_FLOOR_BYTES = 1 << 20


@router.post("/floor")
async def floor(request: Request, size: int = 512) -> Response:
    """Read the body, answer `size` bytes of JSON: what any endpoint costs before it does any work."""
    await request.body()
    size = max(16, min(size, MAX_FLOOR_BYTES))
    return Response(b'{"pad":"' + b"x" * (size - 10) + b'"}', media_type="application/json")
