"""CPU time per request of a trivial endpoint, in-process (an ASGI driver, no sockets): genserve's /_bench/floor
behind all of genserve's middleware and routing versus the same endpoint in a plain FastAPI app. Finds per-request
overhead without wrk and without an idle machine (CPU time, not wall time).

    python -m bench.floor_cpu [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from typing import Any

from fastapi import FastAPI, Request, Response

from bench.floor_app import PATH
from bench.route_cpu import one

BODY = b'{"n": 1, "seed": 1}'


def plain_app() -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def floor(request: Request, size: int = 512) -> Response:
        await request.body()
        return Response(b'{"pad":"' + b"x" * (size - 10) + b'"}', media_type="application/json")

    return app


async def measure(apps: list[tuple[str, Any]], n: int) -> None:
    for name, app in apps * 2:  # twice each, interleaved: the second round is the one to read
        for _ in range(n // 10):
            await one(app, PATH, BODY)
        start = time.process_time()
        for _ in range(n):
            await one(app, PATH, BODY)
        print(f"{name}: {(time.process_time() - start) / n * 1e6:.1f} µs of CPU per request", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.setdefault("GENSERVE_STORE_DIR", tempfile.mkdtemp(prefix="genserve-floor-"))
    os.environ.setdefault("GENSERVE_REDIS_URL", "redis://127.0.0.1:6379/12")
    from bench.floor_app import create

    asyncio.run(measure([("plain FastAPI", plain_app()), ("genserve", create())], args.requests))


if __name__ == "__main__":
    main()
