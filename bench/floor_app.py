"""genserve's app plus the benchmark's HTTP floor: a trivial endpoint behind the same middleware, the same lean route
class and the same access check as the sampling route, so that bench/serve.py can measure what any request costs
before it does any work. Built around `create_app`: the product itself has no benchmark route.

    python -m bench.floor_app --port 18000    # serves it as `genserve serve` would (same uvicorn settings)
"""

from __future__ import annotations

import argparse

from fastapi import APIRouter, FastAPI, Request, Response

from app.auth import requires
from app.main import create_app, include_flat
from app.serving.lean_route import LeanRoute
from app.settings import Settings, get_settings

PATH = "/_bench/floor"
MAX_FLOOR_BYTES = 1 << 20
DEFAULT_FLOOR_BYTES = 512

router = APIRouter(include_in_schema=False, route_class=LeanRoute, dependencies=[requires("sample")])


@router.post(PATH)
async def floor(request: Request) -> Response:
    """Read the body, answer `?size=` bytes of JSON: what any endpoint costs before it does any work."""
    await request.body()
    try:
        size = int(request.query_params.get("size", DEFAULT_FLOOR_BYTES))
    except ValueError:
        size = DEFAULT_FLOOR_BYTES
    size = max(16, min(size, MAX_FLOOR_BYTES))
    return Response(b'{"pad":"' + b"x" * (size - 10) + b'"}', media_type="application/json")


def create(settings: Settings | None = None) -> FastAPI:
    """`create_app` with the floor route matched first (where the sampling route is, among the product's routes)."""
    app = create_app(settings)
    include_flat(app, router)
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def main() -> None:
    from genserve import configure_logging, serve

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    settings = get_settings()
    configure_logging(settings.log_level)
    serve(settings, host=args.host or settings.host, port=args.port or settings.port, factory="bench.floor_app:create")


if __name__ == "__main__":
    main()
