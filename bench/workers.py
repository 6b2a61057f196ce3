"""Many API processes on one machine (issue 25, part 3): `genserve serve --workers N` against N = 1.

Each process has its own batcher and its own copy of the model on the device (CPU or one GPU); the kernel spreads
connections over them. For each N in `--workers`, wrk (`--clients` connections, a fresh seed per request) asks for
single-sample PNGs, then for n = 64 PNGs, and the table gives requests/s, samples/s, p50 / p99 and errors. The
service gets `--server-cores`, wrk `--client-cores`; on a 2-core machine they overlap (say so when reporting).
The model is bench/serve.py's (the MNIST GAN recipe, briefly trained), or `--store S --model M`.

    python -m bench.workers [--workers 1,2] [--clients 64] [--duration 10] [--device cpu]
    python -m bench.workers --device cuda --workers 1,2,4,8 --clients 256 --server-cores 0-11 --client-cores 12-15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.machine import cpu_model
from bench.serve import Server, gpu_name, prepare_model, service_env, wrk

ROOT = Path(__file__).resolve().parents[1]
BODIES = {1: '{"n": 1, "seed": %d, "format": "png"}', 64: '{"n": 64, "seed": %d, "format": "png"}'}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the worker counts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--event-loop", default="asyncio", choices=("auto", "asyncio", "uvloop"), help="GENSERVE_EVENT_LOOP"
    )
    parser.add_argument("--server-cores", default="0-1")
    parser.add_argument("--client-cores", default="1")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="genserve-workers-"))
    store = args.store or tmp / "store"
    model_id = args.model or prepare_model(store, args.mnist, args.train_steps)
    env = service_env(
        store, args.device, args.event_loop, GENSERVE_PRELOAD_MODELS=model_id, GENSERVE_MAX_QUEUE_SAMPLES="100000"
    )
    print(
        f"# bench/workers.py — {cpu_model()}; device {args.device}{gpu_name(args.device)}; service on cores "
        f"{args.server_cores}, wrk on {args.client_cores}; {args.clients} clients, {args.duration} s per point",
        flush=True,
    )
    print("\n| workers | n | requests/s | samples/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    results: list[dict[str, Any]] = []
    port = 22000 + os.getpid() % 1000
    for _ in range(args.rounds):
        for w in counts:
            cmd = ["taskset", "-c", args.server_cores, sys.executable, "-m", "genserve", "serve"]
            cmd += ["--port", str(port), "--workers", str(w)]
            server = Server(cmd, env, port, tmp / f"workers-{w}.log")
            try:
                url = f"http://127.0.0.1:{port}/v1/models/{model_id}/samples"
                for n, body in BODIES.items():
                    wrk(url, body, True, args.clients, 2, args.client_cores)  # every process warm
                    r = wrk(url, body, True, args.clients, args.duration, args.client_cores)
                    r.update(workers=w, n=n, samples_per_s=r["rps"] * n)
                    results.append(r)
                    print(
                        f"| {w} | {n} | {r['rps']:.0f} | {r['samples_per_s']:.0f} | {r['p50_ms']:.2f} | "
                        f"{r['p99_ms']:.2f} | {r['errors']} |",
                        flush=True,
                    )
            finally:
                server.stop()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
