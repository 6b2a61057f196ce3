"""CPU time per request of the sampling route in-process (an ASGI driver on uvloop, no sockets), beside the floor
route, with many concurrent callers so that batching works as under load. Finds per-request overhead without wrk
and without an idle machine (CPU time, not wall time); `--canned` replaces the forward pass and encoding by a ready
body, leaving only what the route, the batcher and the HTTP layers above them cost.

    python -m bench.route_cpu --store DIR --model ID [--requests 6400] [--clients 64] [--canned] [--inline on|off]

DIR/ID: a stored model, e.g. the one `bench/serve.py` trains (or any model id in a store); ID may be a reference,
`name:version` or `name@alias`, which the requests then use (what resolving it costs is part of the measure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any


def scope(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"size=680",
        "root_path": "",
        "headers": [
            (b"host", b"x"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def one(app: Any, path: str, body: bytes) -> None:
    """One request through the whole ASGI app; the client stays connected until the response is complete."""
    sent, done = False, asyncio.Event()
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope(path, body), receive, send)
    done.set()
    if statuses != [200]:
        raise RuntimeError(f"status {statuses}")


async def measure(args: argparse.Namespace) -> None:
    from app.serving.encoding import Encoded
    from bench.floor_app import PATH, create

    app = create()
    async with app.router.lifespan_context(app):
        loaded = app.state.services.models._models[app.state.services.refs.resolve(args.model)]
        assert loaded.batcher is not None
        if args.canned:
            ready = Encoded(b'{"images": ["' + b"x" * 680 + b'"], "seed": 1}', "application/json", 1)
            loaded.batcher.run_batch = lambda jobs: [ready] * len(jobs)
        seeds = iter(range(10**9))
        per_client = args.requests // args.clients
        n = per_client * args.clients

        async def client(count: int, path: str) -> None:
            for _ in range(count):
                await one(app, path, json.dumps({"n": 1, "seed": next(seeds), "format": "png"}).encode())

        print("| route | requests | clients | requests/s (wall) | µs of CPU per request |\n|---|---|---|---|---|")
        for label, path in [("floor", PATH), ("samples", f"/v1/models/{args.model}/samples")] * 2:
            await asyncio.gather(*(client(max(1, per_client // 5), path) for _ in range(args.clients)))  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(client(per_client, path) for _ in range(args.clients)))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(
                f"| {label}{' (canned)' if args.canned and label == 'samples' else ''} | {n} | {args.clients} | "
                f"{n / wall:.0f} | {cpu / n * 1e6:.1f} |",
                flush=True,
            )


def main() -> None:
    from models.registry import ModelRegistry
    from models.store import ArtifactStore

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--canned", action="store_true", help="no forward pass: a ready body for every request")
    parser.add_argument("--inline", choices=["auto", "on", "off"], default="auto")
    args = parser.parse_args()
    os.environ.update(
        {
            "GENSERVE_STORE_DIR": str(args.store),
            "GENSERVE_LOG_LEVEL": "warning",
            "GENSERVE_PRELOAD_MODELS": ModelRegistry(ArtifactStore(args.store)).resolve(args.model),
            "GENSERVE_MAX_QUEUE_SAMPLES": "100000",
            "GENSERVE_INLINE_INFERENCE": args.inline,
        }
    )
    os.environ.setdefault("GENSERVE_REDIS_URL", "redis://127.0.0.1:6379/12")
    import torch
    import uvloop

    torch.set_num_threads(1)
    uvloop.run(measure(args))


if __name__ == "__main__":
    main()
